#!/usr/bin/env bash
# End to end: the policy agent against a TLS Policy Server, with containers made by libcni
# (the reference ptp plugin as main plugin, docknfv chained with the metadata capability).
#
#   [ A 10.244.x ] ──ptp── [ host: docknfv-agent, policy server ] ──ptp── [ B 10.244.y :8080 ]
#
# Usage: agent-e2e.sh BIN_DIR REPO_ROOT
set -euo pipefail
BIN=$(cd "$1" && pwd); ROOT=$(cd "$2" && pwd)
id=$$
HOST=dnfvt-agh-$id; A=dnfvt-aga-$id; B=dnfvt-agb-$id; C=dnfvt-agc-$id
work=$(mktemp -d /tmp/dnfvt-agent-XXXXXX)
pids=()
agent_pid=""; server_pid=""

cleanup() {
  for p in $agent_pid $server_pid "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.2
  for p in $agent_pid $server_pid "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for ns in "$HOST" "$A" "$B" "$C"; do ip netns delete "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
source "$(dirname "$0")/../lib/e2e.sh"
diagnostics() {
  for f in agent.log server.log; do
    [ -f "$work/$f" ] || continue
    echo "--- $f" >&2
    grep -E "Fatal error|Crash|^[0-9]+ .* in docknfv|at /work" "$work/$f" | head -n 12 >&2 || true
    tail -n 8 "$work/$f" >&2
  done
  ip netns exec "$HOST" nft list ruleset >&2 2>/dev/null || true
}

for ns in "$HOST" "$A" "$B"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip netns exec "$HOST" sysctl -qw net.ipv4.ip_forward=1

"$ROOT/scripts/generate-certs" "$work/pki" >/dev/null
"$ROOT/scripts/generate-certs" "$work/other" >/dev/null   # a second CA nobody trusts
GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE="$work/gocache" HOME="$work" \
  go build -o "$work/cnidriver" "$ROOT/Tests/CNIEndToEndTests/cnidriver.go"
mkdir -p "$work/bin"; ln -s /usr/lib/cni/* "$work/bin/"; ln -s "$BIN/docknfv" "$work/bin/docknfv"
export CNI_PATH="$work/bin" CNI_CACHE_DIR="$work/cache"
cat > "$work/net.conflist" <<JSON
{"cniVersion":"1.0.0","name":"c2c","plugins":[
  {"type":"ptp","ipam":{"type":"host-local","dataDir":"$work/ipam","ranges":[[{"subnet":"10.244.0.0/24"}]],"routes":[{"dst":"0.0.0.0/0"}]}},
  {"type":"docknfv","stateDir":"$work/state","capabilities":{"metadata":true}}]}
JSON
add() { # add NS GROUP → prints the container's address
  ip netns exec "$HOST" "$work/cnidriver" add "$work/net.conflist" "ctr-$1" "/run/netns/$1" eth0 "{\"metadata\":{\"policy_group_id\":\"$2\"}}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["ips"][0]["address"].split("/")[0])'
}
A_IP=$(add "$A" ga); B_IP=$(add "$B" gb)
[ -n "$A_IP" ] && [ -n "$B_IP" ] || fail "libcni ADD gave no addresses"
grep -q '"policyGroupID" : "gb"' "$work"/state/cni/c2c/*.json || fail "the CNI record lacks the policy group"
pass "two containers added by libcni (ptp + docknfv), A=$A_IP B=$B_IP, groups recorded"

# B serves TCP 8080 (and 9090, which no policy will allow).
for port in 8080 9090; do
  ip netns exec "$B" busybox nc -ll -p $port -e /bin/echo hello >/dev/null 2>&1 & pids+=($!)
done
reach() { [ "$(ip netns exec "$A" busybox nc -w 2 "$B_IP" "$1" </dev/null 2>/dev/null)" = hello ]; }
unreachable() { ! reach "$1"; }
wait_for 5 "B's listener" ip netns exec "$B" sh -c "busybox netstat -ltn | grep -q :8080"
reach 8080 || fail "before any agent, A should reach B (nothing enforces yet)"

echo '{"total_policies":0,"policies":[]}' > "$work/policies.json"
start_server() {
  ip netns exec "$HOST" python3 "$ROOT/Tests/AgentTests/policy-server.py" 127.0.0.1 18443 \
    "$work/pki/server.crt" "$work/pki/server.key" "$work/pki/ca.crt" "$work/policies.json" > "$work/server.log" 2>&1 & server_pid=$!
  wait_for 5 "the policy server" grep -q listening "$work/server.log"
}
start_server
cat > "$work/agent.json" <<JSON
{"policyServerURL":"https://localhost:18443","caCertFile":"$work/pki/ca.crt","clientCertFile":"$work/pki/client.crt",
 "clientKeyFile":"$work/pki/client.key","pollIntervalSeconds":0.5,"stateDir":"$work/state","overlayNetwork":"10.244.0.0/24",
 "failMode":"open","metricsAddress":"127.0.0.1:19100","backend":"nftables"}
JSON
start_agent() {
  ip netns exec "$HOST" "$BIN/docknfv-agent" --config "$work/agent.json" >> "$work/agent.log" 2>&1 & agent_pid=$!
  wait_for 10 "the agent's healthz" ip netns exec "$HOST" curl -fs http://127.0.0.1:19100/healthz
}
metric() { ip netns exec "$HOST" curl -fs http://127.0.0.1:19100/metrics | awk -v m="$1" '$1 == m {print $2}'; }
start_agent
wait_for 5 "the agent to reject A → B" unreachable 8080
pass "without a policy, A → B:8080 is rejected"

policy='{"total_policies":1,"policies":[{"source":{"id":"ga","tag":"0001"},"destination":{"id":"gb","tag":"0002","protocol":"tcp","ports":{"start":8080,"end":8080}}}]}'
echo "$policy" > "$work/policies.json"
wait_for 5 "the policy to take effect" reach 8080
reach 9090 && fail "9090 is not in the policy"
# Read whole before matching: with pipefail, grep -q's early exit can fail nft with SIGPIPE.
ruleset=$(ip netns exec "$HOST" nft list ruleset)
grep -q 'meta mark set 0x00000001' <<<"$ruleset" || fail "A's packets are not tagged with its group's tag"
pass "a policy allows A → B:8080 within a poll; 9090 stays rejected; A's traffic carries its tag"

commits=$(metric docknfv_agent_commits_total)
sleep 1.5
[ "$(metric docknfv_agent_commits_total)" = "$commits" ] || fail "polls that change nothing wrote to the kernel"
pass "polls that change nothing write nothing (commits stay at $commits)"

echo '{"total_policies":0,"policies":[]}' > "$work/policies.json"
wait_for 5 "the policy's removal to take effect" unreachable 8080
pass "removing the policy rejects A → B:8080 again"

echo "$policy" > "$work/policies.json"
wait_for 5 "the policy again" reach 8080
kill -TERM "$agent_pid"; wait "$agent_pid" 2>/dev/null || true; agent_pid=""
reach 8080 || fail "the rules should stay in force while the agent is stopped"
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
start_agent   # the server is down: the last good state is enforced at start
reach 8080 || fail "the restarted agent lost the policy"
[ "$(metric docknfv_agent_commits_total)" = 0 ] || fail "the restart rewrote rules that were already in place"
sleep 1.5
reach 8080 || fail "with the server unreachable (fail open) the last good policy must stay"
[ "$(metric docknfv_agent_poll_failures_total)" -gt 0 ] || fail "the failed polls are not counted"
pass "agent restarted mid-way loses nothing; with the server stopped (open mode) nothing changes, failures counted"

start_server
echo garbage > "$work/policies.json.status"
before=$(metric docknfv_agent_poll_failures_total)
ip netns exec "$HOST" curl -fs -X POST http://127.0.0.1:19100/force-poll >/dev/null
more_failures() { [ "$(metric docknfv_agent_poll_failures_total)" -gt "$before" ]; }
wait_for 5 "a rejected poll" more_failures
reach 8080 || fail "an unusable answer must not change the rules"
grep -q 'unusable' "$work/agent.log" || fail "the unusable answer is not logged"
pass "an unusable answer is rejected as a whole, counted and logged; the last good rules stay"
rm -f "$work/policies.json.status"

# The server refuses a client without a certificate; the agent refuses an untrusted server.
ip netns exec "$HOST" curl -s --cacert "$work/pki/ca.crt" https://localhost:18443/networking/v1/internal/policies >/dev/null 2>&1 \
  && fail "the server answered a client without a certificate"
kill -TERM "$agent_pid"; wait "$agent_pid" 2>/dev/null || true; agent_pid=""
sed "s#$work/pki/ca.crt#$work/other/ca.crt#" "$work/agent.json" > "$work/agent-untrusting.json"
timeout 5 ip netns exec "$HOST" "$BIN/docknfv-agent" --config "$work/agent-untrusting.json" > "$work/untrusting.log" 2>&1 || true
grep -q 'poll failed' "$work/untrusting.log" && grep -qi 'certificate' "$work/untrusting.log" \
  || { cat "$work/untrusting.log" >&2; fail "an agent that does not trust the server's CA should fail its polls"; }
reach 8080 || fail "the untrusting agent changed the rules"
pass "the server refuses a client without a certificate; the agent refuses an untrusted server and keeps the rules"

# With no agent running, a new container of group gb gets the known policies at its ADD.
ip netns add "$C"; ip -n "$C" link set lo up
C_IP=$(add "$C" gb)
for port in 8080 9090; do ip netns exec "$C" busybox nc -ll -p $port -e /bin/echo hello >/dev/null 2>&1 & pids+=($!); done
wait_for 5 "C's listener" ip netns exec "$C" sh -c "busybox netstat -ltn | grep -q :9090"
reach_c() { [ "$(ip netns exec "$A" busybox nc -w 2 "$C_IP" "$1" </dev/null 2>/dev/null)" = hello ]; }
reach_c 8080 || fail "the new container should accept what the known policy allows"
reach_c 9090 && fail "the new container should reject what no policy allows, at once"
pass "a container added while the agent is down gets the known policies at its ADD"

sed 's#"clientKeyFile":"[^"]*"#"clientKeyFile":"/nonexistent/client.key"#' "$work/agent.json" > "$work/agent-nokey.json"
if ip netns exec "$HOST" "$BIN/docknfv-agent" --config "$work/agent-nokey.json" > "$work/nokey.log" 2>&1; then fail "started without its key"; fi
grep -q 'clientKeyFile' "$work/nokey.log" || fail "the missing key file is not named"
pass "the agent refuses to start without readable TLS material and names the file"
echo "all agent end-to-end checks passed"
