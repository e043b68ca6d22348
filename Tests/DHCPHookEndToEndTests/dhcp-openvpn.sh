#!/usr/bin/env bash
# End to end: DHCP option 121 → dhclient → docknfv-dhcp-hook → OpenVPN push → VPN client routes.
#
#   lan (dnsmasq, 10.1.0.1) ── eth1 [ vpn: dhclient + OpenVPN server ] eth0 10.2.0.2 ── client (openvpn)
#
# Everything runs in throwaway namespaces; the real dhclient-script runs with /etc/dhcp and
# /etc/resolv.conf replaced for the vpn namespace only (ip netns exec bind-mounts /etc/netns/NAME/*).
# Usage: dhcp-openvpn.sh BIN_DIR SHIM DHCLIENT_CONF
set -euo pipefail
BIN=$(cd "$1" && pwd); SHIM=$(realpath "$2"); DHCONF=$(realpath "$3")
id=$$
LAN=dnfvt-lan-$id; VPN=dnfvt-vpn-$id; CLI=dnfvt-cli-$id
work=$(mktemp -d /tmp/dnfvt-dhcp-XXXXXX)
pids=()

cleanup() {
  local all=("${pids[@]}") f
  for f in dhclient openvpn client1 client2; do [ -f "$work/$f.pid" ] && all+=("$(cat "$work/$f.pid")"); done
  for p in "${all[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${all[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for ns in "$LAN" "$VPN" "$CLI"; do ip netns delete "$ns" 2>/dev/null || true; done
  rm -rf "/etc/netns/$VPN" "$work"
}
trap cleanup EXIT

source "$(dirname "$0")/../lib/e2e.sh"
diagnostics() {
  for f in dhclient.log openvpn-server.log client1.log client2.log dnsmasq.log; do
    [ -f "$work/$f" ] && { echo "--- $f" >&2; tail -n 25 "$work/$f" >&2; }
  done
}

# --- topology
for ns in "$LAN" "$VPN" "$CLI"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip link add dnfvt-a$id type veth peer name dnfvt-b$id
ip link set dnfvt-a$id netns "$LAN" name eth0; ip link set dnfvt-b$id netns "$VPN" name eth1
ip link add dnfvt-c$id type veth peer name dnfvt-d$id
ip link set dnfvt-c$id netns "$CLI" name eth0; ip link set dnfvt-d$id netns "$VPN" name eth0
ip -n "$LAN" addr add 10.1.0.1/24 dev eth0
ip -n "$VPN" addr add 10.2.0.2/24 dev eth0
ip -n "$CLI" addr add 10.2.0.10/24 dev eth0
for ns in "$LAN" "$VPN" "$CLI"; do for d in eth0 eth1; do ip -n "$ns" link set "$d" up 2>/dev/null || true; done; done

# --- isolated /etc for the vpn namespace: our dhclient.conf and hook dir, a private resolv.conf
mkdir -p "/etc/netns/$VPN/dhcp/dhclient-exit-hooks.d" "/etc/netns/$VPN/dhcp/dhclient-enter-hooks.d"
cp "$DHCONF" "/etc/netns/$VPN/dhcp/dhclient.conf"
cp "$SHIM" "/etc/netns/$VPN/dhcp/dhclient-exit-hooks.d/docknfv"
: > "/etc/netns/$VPN/resolv.conf"
resolv_before=$(md5sum /etc/resolv.conf)

# --- DHCP server with option 121 (and short renewal times so dhclient renews within seconds)
start_dnsmasq() { # start_dnsmasq ROUTES…
  local opts=(--no-daemon --conf-file=/dev/null --port=0 --user=root --interface=eth0 --bind-interfaces
    --dhcp-range=10.1.0.100,10.1.0.150,255.255.255.0,2m --dhcp-option=3
    --dhcp-option=option:T1,4 --dhcp-option=option:T2,6
    --dhcp-option=option:classless-static-route,"$1"
    --dhcp-leasefile="$work/dnsmasq.leases" --pid-file="$work/dnsmasq.pid" --log-dhcp)
  ip netns exec "$LAN" dnsmasq "${opts[@]}" >>"$work/dnsmasq.log" 2>&1 &
  dnsmasq_pid=$!; pids+=("$dnsmasq_pid")
}
start_dnsmasq "192.168.50.0/24,10.1.0.1,10.20.0.0/16,10.1.0.1"

# --- test PKI
cd "$work"
ext() { printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyAgreement\nextendedKeyUsage=%s\n' "$1" > "$2"; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt -days 2 \
  -subj /CN=docknfv-test-ca 2>/dev/null
for who in server client; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $who.key -out $who.csr -subj /CN=$who 2>/dev/null
  ext "$([ $who = server ] && echo serverAuth || echo clientAuth)" $who.ext
  openssl x509 -req -in $who.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $who.crt -days 2 -extfile $who.ext 2>/dev/null
done

# --- dhclient with the real dhclient-script and our shim
push="$work/docknfv-routes.conf"
ip netns exec "$VPN" dhclient -v -1 -sf /sbin/dhclient-script -cf /etc/dhcp/dhclient.conf \
  -lf "$work/dhclient.leases" -pf "$work/dhclient.pid" \
  -e DOCKNFV_DHCP_HOOK_BIN="$BIN/docknfv-dhcp-hook" -e DOCKNFV_PUSH_FILE="$push" \
  -e DOCKNFV_OPENVPN_MANAGEMENT="unix:$work/mgmt.sock" eth1 >"$work/dhclient.log" 2>&1 \
  || fail "dhclient got no lease"
wait_for 10 "the push file" test -s "$push"
grep -q 'push "route 192.168.50.0 255.255.255.0"' "$push" || fail "push file lacks 192.168.50.0/24: $(cat "$push")"
grep -q 'push "route 10.20.0.0 255.255.0.0"' "$push" || fail "push file lacks 10.20.0.0/16"
[ "$(grep -c '^push' "$push")" -eq 2 ] || fail "push file has other routes: $(cat "$push")"
pass "dhclient BOUND wrote the push file with exactly the option 121 routes"

routes=$(ip -n "$VPN" route show proto 78)
echo "$routes" | grep -q '192.168.50.0/24 via 10.1.0.1 dev eth1' || fail "route 192.168.50.0/24 not installed: $routes"
echo "$routes" | grep -q '10.20.0.0/16 via 10.1.0.1 dev eth1' || fail "route 10.20.0.0/16 not installed: $routes"
pass "the routes are installed in the vpn namespace's main table via eth1"
[ "$(md5sum /etc/resolv.conf)" = "$resolv_before" ] || fail "the host's /etc/resolv.conf changed"

# --- OpenVPN server including the push file
cat > server.conf <<EOF
dev tun
proto udp
local 10.2.0.2
port 1194
topology subnet
server 10.8.0.0 255.255.255.0
ca $work/ca.crt
cert $work/server.crt
key $work/server.key
dh none
management $work/mgmt.sock unix
writepid $work/openvpn.pid
log $work/openvpn-server.log
verb 3
keepalive 2 10
config $push
EOF
ip netns exec "$VPN" openvpn --config "$work/server.conf" --daemon docknfv-test-server || fail "openvpn server did not start"
wait_for 10 "the OpenVPN server" grep -q 'Initialization Sequence Completed' openvpn-server.log

cat > client.conf <<EOF
client
dev tun
proto udp
remote 10.2.0.2 1194
nobind
ca $work/ca.crt
cert $work/client.crt
key $work/client.key
remote-cert-tls server
connect-retry 1
verb 3
EOF
start_client() { # start_client NAME
  ip netns exec "$CLI" openvpn --config "$work/client.conf" --log "$work/$1.log" --writepid "$work/$1.pid" --daemon "$1" \
    || fail "openvpn client $1 did not start"
  wait_for 20 "client $1 to connect" grep -q 'Initialization Sequence Completed' "$work/$1.log"
}
pushed_routes() { # the route entries of the last PUSH_REPLY in a client log, sorted
  grep 'PUSH: Received control message' "$work/$1.log" | tail -n 1 | grep -o 'route [0-9.]* [0-9.]*' | sort
}

start_client client1
got=$(pushed_routes client1)
want=$(printf 'route 10.20.0.0 255.255.0.0\nroute 192.168.50.0 255.255.255.0\n')
[ "$got" = "$want" ] || fail "client1 received [$got], want [$want]"
client_has() { ip -n "$CLI" route show | grep -q "$1 via 10.8.0.1 dev tun0"; }
wait_for 5 "client1 to install 192.168.50.0/24" client_has 192.168.50.0/24
wait_for 5 "client1 to install 10.20.0.0/16" client_has 10.20.0.0/16
pass "the VPN client received and installed exactly the DHCP routes"
kill "$(cat client1.pid)"; wait_for 5 "client1 to stop" bash -c "! kill -0 $(cat client1.pid) 2>/dev/null"

# --- the DHCP server changes its routes; dhclient's RENEW updates the file and OpenVPN reloads
kill "$dnsmasq_pid"; wait "$dnsmasq_pid" 2>/dev/null || true
start_dnsmasq "192.168.60.0/24,10.1.0.1,10.20.0.0/16,10.1.0.1,172.16.5.0/24,10.1.0.1"
wait_for 20 "RENEW to rewrite the push file" grep -q '192.168.60.0' "$push"
grep -q '192.168.50.0' "$push" && fail "the withdrawn route is still pushed"
routes=$(ip -n "$VPN" route show proto 78)
echo "$routes" | grep -q '192.168.50.0/24' && fail "the withdrawn route is still installed: $routes"
echo "$routes" | grep -q '172.16.5.0/24 via 10.1.0.1 dev eth1' || fail "the new route is not installed: $routes"
pass "a renewal with changed routes rewrote the file and the routes"
wait_for 15 "OpenVPN to reload" bash -c "[ \$(grep -c 'Initialization Sequence Completed' $work/openvpn-server.log) -ge 2 ]"
pass "OpenVPN re-read its configuration after the change"

start_client client2
got=$(pushed_routes client2)
want=$(printf 'route 10.20.0.0 255.255.0.0\nroute 172.16.5.0 255.255.255.0\nroute 192.168.60.0 255.255.255.0\n')
[ "$got" = "$want" ] || fail "client2 received [$got], want [$want]"
wait_for 5 "client2 to install 172.16.5.0/24" client_has 172.16.5.0/24
pass "the next client received exactly the new set"

# --- releasing the lease withdraws everything
kill "$(cat client2.pid)" 2>/dev/null || true
restarts=$(grep -c 'Initialization Sequence Completed' openvpn-server.log)
ip netns exec "$VPN" dhclient -r -sf /sbin/dhclient-script -cf /etc/dhcp/dhclient.conf -lf "$work/dhclient.leases" \
  -pf "$work/dhclient.pid" -e DOCKNFV_DHCP_HOOK_BIN="$BIN/docknfv-dhcp-hook" -e DOCKNFV_PUSH_FILE="$push" \
  -e DOCKNFV_OPENVPN_MANAGEMENT="unix:$work/mgmt.sock" eth1 >>dhclient.log 2>&1 || fail "dhclient -r failed"
grep -q '^push' "$push" && fail "routes still pushed after RELEASE: $(cat "$push")"
[ -z "$(ip -n "$VPN" route show proto 78)" ] || fail "routes still installed after RELEASE"
wait_for 15 "OpenVPN to reload after RELEASE" bash -c "[ \$(grep -c 'Initialization Sequence Completed' $work/openvpn-server.log) -gt $restarts ]"
pass "RELEASE withdrew the pushed and installed routes"
echo "all DHCP/OpenVPN end-to-end checks passed"
