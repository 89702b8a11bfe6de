// Package agent is Skein's node agent: it loads and feeds the capture
// programs, runs the node proxy, and serves the admin API and metrics.
//
// The agent turns a cluster [model.Snapshot] (from YAML files in standalone
// mode, or the API server) into two things: the BPF policy maps (which pod
// cgroups are meshed, which addresses are mesh destinations) and the proxy's
// routing table. It owns every kernel object it creates; pinned ones outlive
// it on purpose (see package bpf/capture) so that a restart or an upgrade
// never stops capture.
package agent
