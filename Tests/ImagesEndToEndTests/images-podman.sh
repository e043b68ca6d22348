#!/usr/bin/env bash
# End to end: the built VNF images under podman (CNI backend, runc, throwaway store), attached to a
# left and a right bridge network inside a throwaway "host" namespace; the machine's own networking
# and podman state are left alone.
#
#   dockwall:   wleft ns 10.91.1.1 ── [bridge, L2] ── eth(left) [ dockwall ] eth(right) ── [bridge, L2]
#                                                        ── wrtr ns 10.91.2.1 ── wbey ns 10.92.0.2
#   dockvpn:    vlan ns 10.93.1.1 (dnsmasq, option 121; 192.168.50.1 behind it) ── [bridge, no IPAM]
#                 ── eth(left) [ dockvpn ] eth(right) ── [bridge] ── vcli ns 10.93.2.1 (openvpn client)
#
# Usage: images-podman.sh OCI_DIR [dockwall|dockvpn|all]      Prints PASS: lines; exits non-zero on failure.
set -euo pipefail
OCI=$(cd "$1" && pwd); WHAT=${2:-all}
P=${DOCKNFV_TEST_NETNS_PREFIX:-dnfvt}
id=$$
HOST=$P-ihost-$id
work=$(mktemp -d "/tmp/$P-images-XXXXXX")
nses=("$HOST")
pids=()

podman_() {
  timeout 120 nsenter --net="/run/netns/$HOST" env CONTAINERS_CONF="$work/containers.conf" \
    CONTAINERS_STORAGE_CONF="$work/storage.conf" podman --network-config-dir "$work/net" "$@"
}
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  [ -f "$work/containers.conf" ] && podman_ rm -a -f -t 0 >/dev/null 2>&1
  [ -f "$work/containers.conf" ] && podman_ volume rm -a -f >/dev/null 2>&1
  for f in "$work"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  for ns in "${nses[@]}"; do ip netns delete "$ns" 2>/dev/null; done
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
source "$(dirname "$0")/../lib/e2e.sh"
diagnostics() {
  for c in dockwall dockvpn; do
    podman_ logs "$c" >/dev/null 2>&1 && { echo "--- podman logs $c" >&2; podman_ logs "$c" 2>&1 | tail -n 30 >&2; }
  done
  for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
}
in_() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
newns() { ip netns add "$1"; nses+=("$1"); ip -n "$1" link set lo up; }
# plug NS IF ADDRESS BRIDGE — a veth from NS into a bridge of the host namespace.
ports=0
plug() {
  ports=$((ports + 1)); local port="ip$id$ports"
  ip link add "$port" type veth peer name "p$port"
  ip link set "$port" netns "$1"; ip -n "$1" link set "$port" name "$2"
  [ -n "$3" ] && ip -n "$1" addr add "$3" dev "$2"
  ip -n "$1" link set "$2" up
  ip link set "p$port" netns "$HOST"; ip -n "$HOST" link set "p$port" master "$4" up
}
bridge() { ip -n "$HOST" link add "$1" type bridge; ip -n "$HOST" link set "$1" up; }
# network NAME BRIDGE SUBNET|"" — a podman CNI network: the reference bridge plugin, host-local or no IPAM.
network() {
  local ipam='{}'
  [ -n "$3" ] && ipam="{\"type\":\"host-local\",\"dataDir\":\"$work/ipam\",\"ranges\":[[{\"subnet\":\"$3\",\"rangeStart\":\"${3%.0/24}.100\"}]]}"
  cat > "$work/net/$1.conflist" <<JSON
{"cniVersion":"0.4.0","name":"$1","plugins":[{"type":"bridge","bridge":"$2","isGateway":false,"ipMasq":false,"ipam":$ipam}]}
JSON
}
addr_of() { # addr_of CONTAINER NETWORK
  podman_ inspect --format "{{(index .NetworkSettings.Networks \"$2\").IPAddress}}" "$1"
}
tcp_ok() { # tcp_ok NS ADDRESS PORT — an echo server answers through everything in between
  [ "$(in_ "$1" busybox timeout 3 busybox nc -w 2 "$2" "$3" <<<probe 2>/dev/null)" = probe ]
}
echo_server() { # echo_server NS PORT
  in_ "$1" busybox nc -ll -p "$2" -e /bin/cat >/dev/null 2>&1 & pids+=($!)
}

# --- podman in the host namespace with a throwaway store
newns "$HOST"
mkdir -p "$work/net" "$work/root" "$work/runroot" "$work/tmp" "$work/ipam"
cat > "$work/containers.conf" <<EOF2
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[network]
network_backend = "cni"
cni_plugin_dirs = ["/usr/lib/cni"]
network_config_dir = "$work/net"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "none"
tmp_dir = "$work/tmp"
EOF2
cat > "$work/storage.conf" <<EOF2
[storage]
driver = "vfs"
graphroot = "$work/root"
runroot = "$work/runroot"
EOF2

dockwall() {
  podman_ load -q -i "$OCI/dockwall.oci.tar" >/dev/null || fail "podman load dockwall.oci.tar"
  local image=localhost/dockwall:latest
  podman_ image exists "$image" || podman_ tag "$(podman_ images -q | head -n 1)" "$image"
  bridge wl-left; bridge wl-right
  network wleft wl-left 10.91.1.0/24; network wright wl-right 10.91.2.0/24
  newns "$P-wleft-$id"; newns "$P-wrtr-$id"; newns "$P-wbey-$id"
  local L=$P-wleft-$id R=$P-wrtr-$id B=$P-wbey-$id
  plug "$L" eth0 10.91.1.1/24 wl-left
  plug "$R" eth0 10.91.2.1/24 wl-right
  ip link add "wb$id" type veth peer name "wc$id"
  ip link set "wb$id" netns "$R" name eth1; ip link set "wc$id" netns "$B" name eth0
  ip -n "$R" addr add 10.92.0.1/24 dev eth1; ip -n "$R" link set eth1 up
  ip -n "$B" addr add 10.92.0.2/24 dev eth0; ip -n "$B" link set eth0 up
  ip -n "$B" route add default via 10.92.0.1
  in_ "$R" sysctl -qw net.ipv4.ip_forward=1
  echo_server "$B" 7001; echo_server "$B" 7002
  wait_for 5 "echo servers" in_ "$B" sh -c 'ss -Hltn | grep -q :7002'

  printf '*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p tcp --dport 7002 -j DROP\nCOMMIT\n' > "$work/rules.v4"
  local run=(run -d --name dockwall --cap-add NET_ADMIN --cap-add NET_RAW
    --network wleft:interface_name=eth1 --network wright:interface_name=eth0
    -e DOCKNFV_LEFT_GW=10.91.1.1 -e DOCKNFV_RIGHT_GW=10.91.2.1
    -v dockwall-state:/var/lib/docknfv -v "$work/rules.v4:/etc/dockwall/rules.v4:ro")
  local sysctls=(--sysctl net.ipv4.ip_forward=1 --sysctl net.ipv4.conf.all.rp_filter=2)

  # Without the sysctls docknfv-init cannot set them (/proc/sys is read-only) and names the flags.
  podman_ run --name dockwall-nosysctl --cap-add NET_ADMIN --cap-add NET_RAW --network wleft:interface_name=eth1 \
    --network wright:interface_name=eth0 -e DOCKNFV_LEFT_GW=10.91.1.1 -e DOCKNFV_RIGHT_GW=10.91.2.1 \
    "$image" > "$work/nosysctl.log" 2>&1 && fail "dockwall started without --sysctl net.ipv4.ip_forward=1"
  grep -q -- '--sysctl net.ipv4.ip_forward=1' "$work/nosysctl.log" || fail "no --sysctl flags named: $(cat "$work/nosysctl.log")"
  podman_ rm -f dockwall-nosysctl >/dev/null 2>&1 || true
  pass "without --sysctl, dockwall exits naming the flags: $(grep -o 'start the container with.*' "$work/nosysctl.log")"

  podman_ "${run[@]}" "${sysctls[@]}" "$image" >/dev/null || fail "podman run dockwall"
  up() { podman_ logs dockwall 2>&1 | grep -c 'dockwall: running' | grep -qx "$1"; }
  wait_for 30 "dockwall to start" up 1
  route_through() { # the only way between left and beyond is through dockwall's current addresses
    local l r; l=$(addr_of dockwall wleft); r=$(addr_of dockwall wright)
    [ -n "$l" ] && [ -n "$r" ] || fail "no addresses from podman inspect"
    ip -n "$L" route replace 10.92.0.0/24 via "$l"
    ip -n "$R" route replace 10.91.1.0/24 via "$r"
  }
  route_through
  in_ "$L" ping -c 1 -W 2 10.92.0.2 >/dev/null || fail "left cannot ping beyond the right gateway through dockwall"
  tcp_ok "$L" 10.92.0.2 7001 || fail "TCP 7001 left → beyond does not pass"
  pass "a host on the left reaches a host beyond the right gateway through dockwall (ICMP, TCP)"
  tcp_ok "$L" 10.92.0.2 7002 && fail "TCP 7002 passes although the configured rule drops it"
  pass "the rule from the mounted file blocks TCP 7002"
  podman_ exec dockwall iptables -L -n > "$work/iptables.txt" || fail "iptables -L in dockwall"
  grep -q 'tcp dpt:7002' "$work/iptables.txt" || fail "iptables -L in dockwall does not show the rule: $(cat "$work/iptables.txt")"
  podman_ exec dockwall docknfvctl status > "$work/status.txt" 2>&1 || true
  grep -qi 'iptables' "$work/status.txt" || fail "docknfvctl status does not name the iptables backend: $(cat "$work/status.txt")"
  pass "inside dockwall, iptables (legacy) lists docknfv's rule and docknfvctl uses libiptc"

  podman_ exec dockwall docknfvctl rule add --chain FORWARD -- -p tcp --dport 7001 -j DROP >/dev/null || fail "docknfvctl rule add"
  tcp_ok "$L" 10.92.0.2 7001 && fail "TCP 7001 still passes after docknfvctl rule add"
  in_ "$L" ping -c 1 -W 2 10.92.0.2 >/dev/null || fail "ICMP stopped after the runtime rule"
  pass "podman exec dockwall docknfvctl rule add blocks TCP 7001 at runtime"

  podman_ restart -t 2 dockwall >/dev/null || fail "podman restart dockwall"
  wait_for 30 "dockwall to start again" up 2
  # Read the logs whole first: with pipefail, `grep -q` closing the pipe early fails `podman logs`.
  podman_ logs dockwall > "$work/dockwall-restart.log" 2>&1 || true
  grep -q 'configured rules unchanged' "$work/dockwall-restart.log" || fail "the restart re-imported the configured rules"
  route_through
  in_ "$L" ping -c 1 -W 2 10.92.0.2 >/dev/null || fail "left cannot ping beyond after the restart"
  tcp_ok "$L" 10.92.0.2 7001 && fail "the runtime rule did not survive the restart"
  tcp_ok "$L" 10.92.0.2 7002 && fail "the configured rule did not survive the restart"
  pass "after podman restart the runtime rule and the configured rule are in force (state volume)"
  podman_ rm -f -t 0 dockwall >/dev/null
}

dockvpn() {
  podman_ load -q -i "$OCI/dockvpn.oci.tar" >/dev/null || fail "podman load dockvpn.oci.tar"
  local image=localhost/dockvpn:latest
  bridge vl-left; bridge vl-right
  network vleft vl-left ""; network vright vl-right 10.93.2.0/24
  newns "$P-vlan-$id"; newns "$P-vcli-$id"
  local LAN=$P-vlan-$id CLI=$P-vcli-$id
  plug "$LAN" eth0 10.93.1.1/24 vl-left
  plug "$CLI" eth0 10.93.2.1/24 vl-right
  # A host beyond the DHCP server's router: 192.168.50.1 on lo (arp_announce=2: ARP from 10.93.1.1).
  ip -n "$LAN" addr add 192.168.50.1/32 dev lo
  in_ "$LAN" sysctl -qw net.ipv4.conf.all.arp_announce=2
  in_ "$LAN" dnsmasq --no-daemon --conf-file=/dev/null --port=0 --user=root --interface=eth0 --bind-interfaces \
    --dhcp-range=10.93.1.100,10.93.1.150,255.255.255.0,2m --dhcp-option=3 \
    --dhcp-option=option:classless-static-route,192.168.50.0/24,10.93.1.1,10.20.0.0/16,10.93.1.1 \
    --dhcp-leasefile="$work/dnsmasq.leases" --log-dhcp >"$work/dnsmasq.log" 2>&1 & pids+=($!)

  # Test PKI (EC keys), mounted as the container's secrets.
  mkdir -p "$work/pki"; (
    cd "$work/pki"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=dnfv-test-ca
    for who in server client; do
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $who.key -out $who.csr -subj /CN=$who
      printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyAgreement\nextendedKeyUsage=%s\n' \
        "$([ $who = server ] && echo serverAuth || echo clientAuth)" > $who.ext
      openssl x509 -req -in $who.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $who.crt -days 2 -extfile $who.ext
    done
    openvpn --genkey tls-crypt tls-crypt.key
  ) >/dev/null 2>&1 || fail "test PKI"
  mkdir -p "$work/secrets"; cp "$work/pki/"{ca.crt,server.crt,server.key,tls-crypt.key} "$work/secrets/"

  podman_ run -d --name dockvpn --cap-add NET_ADMIN --cap-add NET_RAW --device /dev/net/tun \
    --sysctl net.ipv4.ip_forward=1 --network vleft:interface_name=eth1 --network vright:interface_name=eth0 \
    -e DOCKNFV_RIGHT_GW=10.93.2.1 -e DOCKVPN_MASQUERADE=1 -v "$work/secrets:/run/secrets/dockvpn:ro" \
    "$image" >/dev/null || fail "podman run dockvpn"
  vpn_up() { podman_ logs dockvpn 2>&1 | grep -c 'Initialization Sequence Completed' | grep -qvx 0; }
  wait_for 60 "the OpenVPN server in dockvpn" vpn_up
  podman_ exec dockvpn ip route show proto 78 > "$work/vpn-routes.txt"
  grep -q '192.168.50.0/24 via 10.93.1.1 dev eth1' "$work/vpn-routes.txt" || fail "option 121 route not installed: $(cat "$work/vpn-routes.txt")"
  grep -q '10.20.0.0/16 via 10.93.1.1 dev eth1' "$work/vpn-routes.txt" || fail "option 121 route not installed: $(cat "$work/vpn-routes.txt")"
  pass "dockvpn got a lease with option 121 on its left network and installed the routes"

  local server; server=$(addr_of dockvpn vright)
  cat > "$work/client.conf" <<EOF2
client
dev tun
proto udp
remote $server 1194
nobind
ca $work/pki/ca.crt
cert $work/pki/client.crt
key $work/pki/client.key
tls-crypt $work/pki/tls-crypt.key
remote-cert-tls server
connect-retry 1
verb 3
EOF2
  in_ "$CLI" openvpn --config "$work/client.conf" --log "$work/client.log" --writepid "$work/client.pid" --daemon dnfv-client \
    || fail "openvpn client did not start"
  wait_for 30 "the client to connect" grep -q 'Initialization Sequence Completed' "$work/client.log"
  local got want
  got=$(grep 'PUSH: Received control message' "$work/client.log" | tail -n 1 | grep -o 'route [0-9.]* [0-9.]*' | sort)
  want=$(printf 'route 10.20.0.0 255.255.0.0\nroute 192.168.50.0 255.255.255.0\n')
  [ "$got" = "$want" ] || fail "the client received [$got], want [$want]"
  grep 'PUSH: Received control message' "$work/client.log" | tail -n 1 | grep -qi 'compress\|comp-lzo' && fail "compression pushed"
  pass "an OpenVPN client from the right received exactly the option 121 routes (no compression)"
  in_ "$CLI" ping -c 1 -W 3 192.168.50.1 >/dev/null || fail "the client cannot reach 192.168.50.1 on the left through the tunnel"
  pass "the client reaches a host on the left through the tunnel and dockvpn"
  podman_ rm -f -t 0 dockvpn >/dev/null
}

case $WHAT in
  dockwall) dockwall ;;
  dockvpn) dockvpn ;;
  all) dockwall; dockvpn ;;
  *) fail "unknown part $WHAT" ;;
esac
echo "all image end-to-end checks passed"
