# Shell helpers of the end-to-end scripts (sourced). A script may define `diagnostics`, which
# `fail` runs before exiting to show the logs and kernel state that explain the failure.
fail() {
  echo "FAIL: $*" >&2
  # Diagnostics must not end fail() early under errexit.
  if declare -F diagnostics >/dev/null; then diagnostics || true; fi
  exit 1
}
pass() { echo "PASS: $*"; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND…
  local limit=$1 what=$2; shift 2
  for _ in $(seq $((limit * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "timed out after ${limit}s waiting for $what"
}
