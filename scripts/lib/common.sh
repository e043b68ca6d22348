# Shared helpers for docknfv's scripts. Source it; do not run it.
# shellcheck shell=bash

DOCKNFV_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PATH="/opt/swift/usr/bin:$PATH:/usr/sbin:/sbin"

# Debian packages needed to build docknfv (C libraries it links against).
BUILD_PACKAGES=(pkg-config libnl-3-dev libnl-route-3-dev libiptc-dev libmnl-dev libnftnl-dev)
# Tools the demo and the tests use as peers and oracles.
RUNTIME_PACKAGES=(iproute2 iputils-ping iptables ipset nftables procps util-linux socat conntrack busybox-static)
# Real peers of the end-to-end tests.
# The CNI end-to-end tests: podman (CNI backend, runc; the image is busybox-static), the reference
# plugins, and Debian's libcni with Go to build a driver on it.
PEER_PACKAGES=(dnsmasq-base isc-dhcp-client openvpn openssl
  podman runc containernetworking-plugins golang-go golang-github-appc-cni-dev
  buildah mmdebstrap)
# Building the VNF images (scripts/build-images): buildah with vfs storage, mmdebstrap for the
# local Debian base, podman to import and save; the images end-to-end tests need them too.
IMAGE_PACKAGES=(buildah mmdebstrap podman runc)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ensure_packages PKG… — installs whichever of PKG… is missing (needs root and apt).
ensure_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing Debian packages (${missing[*]}); run as root to install them"
  log "installing ${missing[*]}"
  if [ -z "${DOCKNFV_APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
    export DOCKNFV_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

require_root() { [ "$(id -u)" -eq 0 ] || die "run as root: it creates network namespaces"; }

require_swift() { command -v swift >/dev/null || die "Swift toolchain not found (expected /opt/swift/usr/bin/swift)"; }

# `swift build` arguments of every release build: the Swift stdlib linked statically, and through
# the linker script in Linking/ the C++ runtime too (Linking/README.md); no $ORIGIN run path (the
# binaries need no library of their own, and none placed beside an installed one may be loaded).
# Add --product NAME.
RELEASE_BUILD=(-c release --static-swift-stdlib --disable-local-rpath -Xlinker "-L$DOCKNFV_ROOT/Linking")

# check_static_cxx BINARY… — fails when a release binary still needs the shared C++ runtime (a
# libstdc++.so found before Linking/ on the linker's search path would do that silently).
check_static_cxx() {
  local binary
  for binary in "$@"; do
    if readelf -d "$binary" | grep -qE 'NEEDED.*(libstdc\+\+|libgcc_s)'; then
      die "$binary needs the shared C++ runtime: the Linking/ linker script was not used (see Linking/README.md)"
    fi
  done
}

# build_release — static-stdlib release binaries in .build/release.
build_release() {
  require_swift
  log "building release binaries (Swift stdlib and C++ runtime linked statically)"
  (cd "$DOCKNFV_ROOT" && swift build "${RELEASE_BUILD[@]}" 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]' | tail -n 5) >&2
  [ "${PIPESTATUS[0]}" -eq 0 ] || die "build failed"
  BIN="$DOCKNFV_ROOT/.build/release"
  check_static_cxx "$BIN/docknfvctl" "$BIN/docknfv" "$BIN/docknfv-init"
}

# bench_summary BENCHMARK CASE DOCKNFV REFERENCE RATIO TARGET MET — one row of the table that
# scripts/bench prints, appended tab-separated to the file $DOCKNFV_BENCH_SUMMARY names (nothing
# when it is unset, so a benchmark run alone prints only its own output). DOCKNFV and REFERENCE
# are figures with their unit, measured in the same run; RATIO is the reference's time / docknfv's
# for times and docknfv's rate / the reference's for rates (above 1: docknfv does better); MET is
# met, NOT met or -; a field that does not apply is -.
bench_summary() {
  [ -n "${DOCKNFV_BENCH_SUMMARY:-}" ] || return 0
  [ $# -eq 7 ] || die "bench_summary takes 7 fields, got $#: $*"
  local IFS=$'\t'
  printf '%s\n' "$*" >> "$DOCKNFV_BENCH_SUMMARY"
}
# bench_met VALUE <=|>= LIMIT — prints met or NOT met.
bench_met() {
  awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN { print ((op == "<=" ? v <= l : v >= l) ? "met" : "NOT met") }'
}
# bench_ratio A B — A / B with two decimals, or - when B is not above 0.
bench_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# Removes namespaces left behind by a test run or demo that was killed hard.
cleanup_stale_namespaces() {
  local prefix=$1 ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix" || true); do
    ip netns delete "$ns" 2>/dev/null || true
  done
}
