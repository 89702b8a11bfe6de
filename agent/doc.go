// Package agent is Skein's node agent: it loads and feeds the capture
// programs, runs the node proxy, and serves the admin API and metrics.
//
// The agent turns a cluster [model.Snapshot] (from YAML files in standalone
// mode, or the API server) into two things: the BPF policy maps (which pod
// cgroups are meshed, which addresses are mesh destinations) and the proxy's
// routing table. It owns every kernel object it creates; pinned ones outlive
// it on purpose (see package bpf/capture) so that a restart or an upgrade
// never stops capture.
//
// Next to capture it loads the kernel flow programs (package bpf/flow), which
// share capture's membership and origin maps and the trace ring, and turns
// their per-pod, per-peer aggregates into the skein_tcp_* metrics with Istio's
// labels (flowlabels.go says how each key is resolved, flowaccount.go how the
// counters stay monotonic when keys are pruned or change label set, and
// telemetry/doc.go what feeds each family). A kernel that refuses the flow
// programs costs those figures only: the agent logs it, shows it in agentctl
// status, and runs on. The flow links and maps are pinned under
// <pin root>/<node>/flow and adopted on restart, like capture's.
package agent
