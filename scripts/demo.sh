#!/usr/bin/env bash
# The Skein demo: a two-node lab with real agents, traffic through the mesh,
# and what the mesh saw. Run by `make demo` (after `make build`), as root.
#   scripts/demo.sh [TOPOLOGY]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
topology=${1:-scripts/topologies/demo.yaml}
bin=$root/bin
lab="$bin/skein-lab"
state=/run/skl
export PATH="$bin:$PATH"

if [ "$(id -u)" -ne 0 ]; then
	echo "demo: run as root (the lab creates network namespaces, cgroups and BPF programs)" >&2
	exit 1
fi

bold=$(tput bold 2>/dev/null || true)
dim=$(tput dim 2>/dev/null || true)
reset=$(tput sgr0 2>/dev/null || true)
step() { printf '\n%s== %s ==%s\n' "$bold" "$*" "$reset"; }
note() { printf '%s%s%s\n' "$dim" "$*" "$reset"; }
inpod() { "$lab" exec "$1" -- "${@:2}"; }
innode() { nsenter --net="/var/run/netns/skl-$1" -- "${@:2}"; }
agentctl() { local node=$1; shift; "$bin/agentctl" --socket "$state/$node/admin.sock" "$@"; }

step "Bringing up the lab ($topology)"
note "Two nodes, one agent each, and skein-ca on node-a issuing SPIFFE certificates."
"$lab" up -f "$topology" --agent "$bin/skein-agent" --agent-arg=--accesslog-sample-rate=1

for node in node-a node-b; do
	for _ in $(seq 1 100); do
		innode "$node" curl -sf --max-time 1 http://127.0.0.1:15020/readyz >/dev/null 2>&1 && break
		sleep 0.2
	done
	innode "$node" curl -sf --max-time 1 http://127.0.0.1:15020/readyz >/dev/null || {
		echo "agent on $node did not become ready; its log:"; tail -20 "$state/$node/agent.log"; exit 1; }
done
for _ in $(seq 1 50); do
	inpod shop/client curl -s --max-time 1 -o /dev/null http://10.96.0.10/ && break
	sleep 0.2
done

# spread URL [ARGS...]: 100 requests from the client, and which pods answered.
spread() {
	inpod shop/client skein-lab http-load --url "$@" --requests 100 --concurrency 4 | sed -n 's/^by status: /    status: /p; s/^by pod: /    pods:   /p'
}

step "Capture: shop/client -> Service product (10.96.0.10:80)"
note "Each connect is rewritten in the kernel (cgroup/connect4) to the node proxy, which picks an"
note "endpoint per request (P2C over latency: the endpoint on this node answers fastest)."
note "The app still sees the address it dialed:"
inpod shop/client curl -s -o /dev/null -w '    curl saw its peer as %{remote_ip}:%{remote_port}\n' http://10.96.0.10/
spread http://10.96.0.10/

step "mTLS between nodes"
note "Requests to product-v2 (node-b) travel in the tunnel on :15008, authenticated both ways with"
note "the workloads' SPIFFE identities. The certificates node-a holds:"
agentctl node-a certs | sed 's/^/    /'
inpod shop/client curl -s -o /dev/null http://10.96.0.13/
inpod shop/client curl -s -o /dev/null http://10.96.0.12/
note "The access log of the last two requests, to product-v2 and product-v1 (SECURITY says how each travelled):"
agentctl node-a logs --workload shop/client --limit 2 -o wide | sed 's/^/    /'

step "Routes: a canary of product by weight and by header (Gateway API HTTPRoute)"
"$lab" apply -f scripts/topologies/demo-routes.yaml
for _ in $(seq 1 50); do agentctl node-a routes 2>/dev/null | grep -q 'HTTPRoute shop/product' && break; sleep 0.2; done
agentctl node-a routes | sed 's/^/    /'
note "90/10 by weight:"
spread http://10.96.0.10/
note "x-canary: true goes to v2 only:"
spread http://10.96.0.10/ --header x-canary:true

step "Authorization: an Istio AuthorizationPolicy denies /admin"
inpod shop/client curl -s -o /dev/null -w '    GET /admin -> %{http_code}\n' http://10.96.0.10/admin
inpod shop/client curl -s -o /dev/null -w '    GET /      -> %{http_code}\n' http://10.96.0.10/
note "agentctl diagnose names who refused what:"
agentctl node-a diagnose shop/client | sed -n '/RECENT FAILURES/,$p' | sed 's/^/    /'

step "A bad change: a route with an invalid timeout"
"$lab" apply -f scripts/topologies/demo-bad-route.yaml
sleep 1
note "The agent rejects that one object and says what to fix:"
agentctl node-a status | sed -n '/^Config errors/,/^Certificates/p' | sed '$d' | sed 's/^/    /'
note "...and keeps serving its last good version (still 90/10):"
spread http://10.96.0.10/
"$lab" apply -f scripts/topologies/demo-routes.yaml

step "Upgrade an agent under load"
note "1,500 requests at 300/s from shop/client while node-a's agent is replaced: the new agent takes"
note "the old one's listening sockets and pinned programs, the old one drains and exits."
inpod shop/client skein-lab http-load --url http://10.96.0.10/ --requests 1500 --rate 300 --concurrency 8 >"$state/demo-load.txt" &
loadpid=$!
sleep 1.5
"$lab" restart-agent node-a
wait "$loadpid"
sed 's/^/    /' "$state/demo-load.txt"

step "Metrics on :15020/metrics (Istio's labels)"
ip_a=$("$lab" status | awk '$1 == "node-a" {print $2}')
innode node-a curl -s "http://$ip_a:15020/metrics" | grep -E '^skein_requests_total\{' | grep 'reporter="source"' | head -4 | sed 's/^/    /'
innode node-a curl -s "http://$ip_a:15020/metrics" | grep -E '^skein_(tcp_connections_opened_total|capture_connects_total|config_generation|bpf_map_entries)' | head -6 | sed 's/^/    /'

step "Kernel events: agentctl trace"
note "Connects of shop/client as the kernel decided them (a two-second capture):"
timeout 2 "$bin/agentctl" --socket "$state/node-a/admin.sock" trace --pod shop/client --type capture >"$state/demo-trace.txt" 2>&1 &
tracepid=$!
sleep 0.5
inpod shop/client curl -s -o /dev/null http://10.96.0.11/ || true
inpod shop/client curl -s -o /dev/null http://10.96.0.10/ || true
wait "$tracepid" || true
head -5 "$state/demo-trace.txt" | sed 's/^/    /'

step "Who is not captured"
if inpod legacy/outsider curl -s --max-time 2 -o /dev/null http://10.96.0.10/; then
	echo "    legacy/outsider -> 10.96.0.10: answered (unexpected)"
else
	echo "    legacy/outsider -> 10.96.0.10: not captured (namespace not enrolled); the lab has no kube-proxy, so no answer"
fi
agentctl node-a workloads | sed 's/^/    /'

step "agentctl status (node-a)"
agentctl node-a status | sed -n '1,/^PROGRAMS/p' | sed '$d'

step "Done"
cat <<MSG
The lab is still running. Look around:
  bin/agentctl --socket $state/node-a/admin.sock status      (also: routes, endpoints, certs, logs, trace, diagnose)
  bin/skein-lab exec shop/client -- curl -s http://10.96.0.10/
  bin/skein-lab apply -f scripts/topologies/demo-routes.yaml
  less $state/node-a/agent.log
Tear it down with:  make demo-down
MSG
