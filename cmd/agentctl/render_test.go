package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skeinmesh/skein/agent/admin"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// golden compares out with testdata/<name>.golden (-update rewrites it).
func golden(t *testing.T, name string, out []byte) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		require.NoError(t, os.WriteFile(p, out, 0o644))
	}
	want, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, string(want), string(out))
}

func TestRenderGolden(t *testing.T) {
	st := admin.Status{
		Version: "1.0.0", Commit: "abc123", Node: "node-a", StartTime: now.Add(-90 * time.Second), Kernel: "6.18.0",
		Ready: true, Mode: "PERMISSIVE", FailMode: "open", ProxyListening: true, ProxyAddress: []string{"10.244.1.1"},
		CgroupRoot: "/sys/fs/cgroup/kubepods", PinPath: "/sys/fs/bpf/skein/node-a/capture", StrictDrops: 2,
		Features: []admin.Feature{{Name: "sockops", Available: true, Required: true}, {Name: "fentry", Detail: "EPERM"}},
		Programs: []admin.Program{{Name: "skein_connect4", ID: 10, LinkID: 3, Pinned: true}},
		Maps:     []admin.Map{{Name: "members", Type: "Hash", MaxEntries: 16384, Entries: 3, Fill: 3.0 / 16384}, {Name: "sock_origin", Type: "SkStorage", Entries: -1}},
		Config: admin.ConfigStatus{Source: "files [/etc/skein/cluster.yaml]", Generation: 7, GenerationApplied: now.Add(-5*time.Second - 250*time.Millisecond), LastApplied: now.Add(-time.Second),
			Objects: map[string]int{"Pod": 4, "Service": 2, "HTTPRoute": 0},
			Errors:  []string{`Service shop/extra: spec.clusterIP: Invalid value: "10.96.0.500": must be an IPv4 or IPv6 address`}},
		Proxy:   admin.ProxyStats{Accepted: 10, Forwarded: 2, HTTPConns: 8, Requests: 100, RequestErrors: 1, TunnelConns: 1, AuthzAllowed: 50, AuthzDenied: 3},
		Capture: map[string]uint64{"redirected": 10, "not_member": 4},
		Certs:   &admin.CertSummary{Count: 2, NextExpiry: now.Add(24 * time.Hour), Issued: 2, Roots: 1},
	}
	ws := []admin.Workload{
		{Namespace: "shop", Pod: "client", Workload: "client", IPs: []string{"10.244.1.10"}, Identity: "spiffe://cluster.local/ns/shop/sa/client",
			Captured: true, Reason: "meshed", Mode: "PERMISSIVE", ExcludedPorts: []uint16{3306}},
		{Namespace: "shop", Pod: "optout", Workload: "optout", IPs: []string{"10.244.1.12"}, Identity: "spiffe://cluster.local/ns/shop/sa/default",
			Reason: "pod opted out (annotation skein.io/mesh=disabled)"},
	}
	routes := admin.Routes{
		Tables: []admin.ServiceRoutes{{Service: "shop/api:80", Entries: []admin.RouteEntry{
			{Clients: "all", Match: "PathPrefix /api/product", Route: "HTTPRoute shop/api rule 0", Backends: "shop/product:80", Filters: "request-headers"},
			{Clients: "all", Match: "PathPrefix /", Route: "HTTPRoute shop/api rule 1", Backends: "shop/v1:80 w=90, shop/v2:80 w=10"},
		}}},
		Statuses: []admin.RouteStatus{{Kind: "HTTPRoute", Namespace: "shop", Name: "api", Parents: []admin.ParentStatus{{Parent: "Service shop/api:80",
			Conditions: []admin.Condition{{Type: "Accepted", Status: "True", Reason: "Accepted"}, {Type: "ResolvedRefs", Status: "False", Reason: "BackendNotFound", Message: "shop/gone not found"}}}}}},
	}
	eps := []admin.ServiceEndpoints{{Service: "shop/product:80", Policy: "p2c-ewma", Endpoints: []admin.Endpoint{
		{Address: "10.244.1.11:8080", Pod: "shop/product-v1", Node: "node-a", EWMA: "1.2ms", InFlight: 1, Requests: 90},
		{Address: "10.244.2.10:8080", Pod: "shop/product-v2", Node: "node-b", Ejected: true, EjectedUntil: now.Add(30 * time.Second), EWMA: "30ms", Requests: 10, Failures: 5, Consecutive5xx: 0},
		{Address: "10.244.2.11:8080", Pod: "shop/product-v3", Node: "node-b", UnreachableUntil: now.Add(400 * time.Millisecond), EWMA: "800µs", Requests: 3, Failures: 3, ConnectFails: 3},
	}}}
	certs := admin.Certs{Enabled: true, Certificates: []admin.Certificate{
		{Identity: "spiffe://cluster.local/ns/shop/sa/client", Serial: "abcdef0123456789", Issuer: "CN=Skein root CA", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(23 * time.Hour), RenewAt: now.Add(11 * time.Hour)},
		{Identity: "spiffe://cluster.local/ns/shop/sa/new"},
	}, Roots: []admin.Root{{Subject: "CN=Skein root CA", Serial: "0123456789abcdef", NotAfter: now.Add(87600 * time.Hour)}}}
	diag := admin.Diagnosis{Pod: "shop/client", Found: true, Local: true, Workload: &ws[0], Captured: true, Why: "meshed",
		BPFMember: "meshed, PERMISSIVE", Programs: []string{"skein_connect4 (prog 10, link 3) on /sys/fs/cgroup/kubepods"},
		Policies: []string{"shop/readers (ALLOW)"}, Certificate: &certs.Certificates[0],
		Failures: []admin.Failure{{Time: now, Role: "source", Peer: "shop/product-v2", What: "GET 10.96.0.10/x", Code: 503, Flags: "UF", Detail: "connect: connection refused"}},
		Hints:    []string{"endpoints unavailable (UH/UF): agentctl endpoints --service <service>"}}
	mapDump := admin.MapDump{Name: "members", Entries: []admin.MapEntry{{Key: "cgroup 101", Value: "meshed, STRICT", Note: "pod shop/client"}}}
	progs := []admin.ProgramStats{{Program: admin.Program{Name: "skein_connect4", ID: 10, LinkID: 3, Pinned: true}, Type: "CGroupSockAddr", RunCount: 100, RunTimeNs: 240000, NsPerRun: 2400}}

	stFlows := st
	stFlows.Flows = &admin.FlowStatus{Enabled: true, PinPath: "/sys/fs/bpf/skein/node-a/flow", Keys: 12, Carried: 2, Pruned: 3, LostEvents: 1,
		Programs: []admin.FlowProgram{
			{Name: "skein_flow_refresh", Hook: "iter/bpf_sk_storage_map", ID: 41, RunCount: 5, RunTimeNs: 50000, NsPerRun: 10000},
			{Name: "skein_flow_rst_rcv", Hook: "tp_btf/tcp_receive_reset", ID: 42, LinkID: 7, Pinned: true, RunCount: 3, RunTimeNs: 900, NsPerRun: 300},
			{Name: "skein_flow_rst_rcv_tp", Hook: "tracepoint/tcp/tcp_receive_reset", Missing: "disabled"},
			{Name: "skein_flow_sockops", Hook: "sockops", ID: 43, LinkID: 8, Pinned: true, RunCount: 1000, RunTimeNs: 412000, NsPerRun: 412},
		},
		Maps: []admin.FlowMap{
			{Name: "flow_live", Entries: 4, MaxEntries: 32768, Fill: 4.0 / 32768},
			{Name: "flow_sk", Entries: 4},
			{Name: "flow_stats", Entries: 12, MaxEntries: 4096, Fill: 12.0 / 4096, InsertFailures: 1},
		}}
	flows := admin.Flows{Enabled: true, Flows: []admin.Flow{
		{Pod: "shop/client", Workload: "shop/client", Direction: "outbound", Local: "10.244.1.10:40000", Peer: "10.244.1.1:15001",
			Dialed: "10.96.0.10:80", PeerName: "service shop/product", State: "ESTABLISHED", SRTTUs: 85, Retransmits: 0,
			BytesSent: 120, BytesReceived: 5 << 20, Start: now.Add(-75 * time.Second), Cookie: 4097},
		{Pod: "shop/client", Workload: "shop/client", Direction: "outbound", Local: "10.244.1.10:40002", Peer: "10.244.2.12:5432",
			PeerName: "pod legacy/db", State: "SYN_SENT", Start: now.Add(-2 * time.Second), Cookie: 4099},
		{Pod: "shop/product", Workload: "shop/product", Direction: "inbound", Local: "10.244.1.11:8080", Peer: "10.244.1.1:51000",
			PeerName: "node proxy", State: "ESTABLISHED", SRTTUs: 1250, Retransmits: 3, BytesSent: 2048, BytesReceived: 512,
			Start: now.Add(-time.Hour), Cookie: 4100},
	}}
	summary := admin.FlowSummary{Enabled: true, Series: []admin.FlowSeries{
		{Reporter: "destination", SourceWorkload: "unknown", SourceNamespace: "unknown", DestinationService: "product.shop.svc.cluster.local",
			DestinationWorkload: "product", DestinationNamespace: "shop", SecurityPolicy: "mutual_tls", Opened: 4, Closed: 3,
			SentBytes: 4096, ReceivedBytes: 1024, RTTMeanUs: 61.5},
		{Reporter: "source", SourceWorkload: "client", SourceNamespace: "shop", DestinationService: "product.shop.svc.cluster.local",
			DestinationWorkload: "product", DestinationNamespace: "shop", SecurityPolicy: "mutual_tls", Opened: 10, Closed: 9, Failed: 2,
			ResetsSent: 1, ResetsReceived: 4, Retransmits: 7, SentBytes: 3 << 20, ReceivedBytes: 900, RTTMeanUs: 85, ConnectMeanUs: 120.4},
	}}

	tests := []struct {
		name   string
		render func(*bytes.Buffer) error
	}{
		{"status_flows", func(b *bytes.Buffer) error { return renderStatus(b, stFlows, now) }},
		{"status_flows_unavailable", func(b *bytes.Buffer) error {
			renderFlowStatus(b, &admin.FlowStatus{Error: "kernel flow figures unavailable: attach skein_flow_sockops: operation not permitted"})
			return nil
		}},
		{"flows", func(b *bytes.Buffer) error { return renderFlows(b, flows, false, now) }},
		{"flows_wide", func(b *bytes.Buffer) error { return renderFlows(b, flows, true, now) }},
		{"flows_disabled", func(b *bytes.Buffer) error {
			return renderFlows(b, admin.Flows{Error: "kernel flow figures unavailable: load flow maps: operation not permitted"}, false, now)
		}},
		{"flows_summary", func(b *bytes.Buffer) error { return renderFlowSummary(b, summary) }},
		{"status", func(b *bytes.Buffer) error { return renderStatus(b, st, now) }},
		{"workloads", func(b *bytes.Buffer) error { return renderWorkloads(b, ws) }},
		{"routes", func(b *bytes.Buffer) error { return renderRoutes(b, routes) }},
		{"routes_none", func(b *bytes.Buffer) error { return renderRoutes(b, admin.Routes{}) }},
		{"endpoints", func(b *bytes.Buffer) error { return renderEndpoints(b, eps) }},
		{"services", func(b *bytes.Buffer) error {
			return renderServices(b, []admin.Service{{Service: "shop/product:80", VIPs: []string{"10.96.0.10"}, Protocol: "http", Policy: "p2c-ewma", Endpoints: 2, Routes: true}, {Service: "shop/db:5432", Protocol: "tcp", Policy: "round-robin"}})
		}},
		{"certs", func(b *bytes.Buffer) error { return renderCerts(b, certs, now) }},
		{"certs_disabled", func(b *bytes.Buffer) error { return renderCerts(b, admin.Certs{}, now) }},
		{"diagnose", func(b *bytes.Buffer) error { return renderDiagnosis(b, diag, now) }},
		{"diagnose_missing", func(b *bytes.Buffer) error {
			return renderDiagnosis(b, admin.Diagnosis{Pod: "shop/ghost", Why: "no such pod in the configuration the agent serves"}, now)
		}},
		{"bpf_map", func(b *bytes.Buffer) error { return renderMapDump(b, mapDump) }},
		{"bpf_progs", func(b *bytes.Buffer) error { return renderProgs(b, progs) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			require.NoError(t, tt.render(&b))
			golden(t, tt.name, b.Bytes())
		})
	}
}

func TestStreamTrace(t *testing.T) {
	in := strings.Join([]string{
		`{"time":"2026-11-25T12:00:00Z","type":"capture","reason":"redirected","pod":"shop/client","orig":"10.96.0.10:80","service":"shop/product"}`,
		`{"time":"2026-11-25T12:00:01Z","type":"lost","lostKernel":0,"lostAgent":0}`,
		`{"time":"2026-11-25T12:00:01Z","type":"strict_drop","reason":"plaintext from outside the mesh","pod":"vault/safe","src":"10.244.1.13:40000","dst":"10.244.2.12:8080","srcPod":"legacy/outsider","dstPod":"vault/safe"}`,
		`{"time":"2026-11-25T12:00:02Z","type":"lost","lostKernel":12,"lostAgent":3}`,
		`{"time":"2026-11-25T12:00:03Z","type":"lost","lostKernel":12,"lostAgent":3}`,
	}, "\n")
	var b bytes.Buffer
	require.NoError(t, streamTrace(strings.NewReader(in), &b, "table", 0))
	golden(t, "trace", b.Bytes())

	b.Reset()
	require.NoError(t, streamTrace(strings.NewReader(in), &b, "table", 1))
	require.Contains(t, b.String(), "-- 1 events shown", "--count stops early")
}

// TestStreamTraceFlows prints the flow programs' events as the agent
// resolves them.
func TestStreamTraceFlows(t *testing.T) {
	in := strings.Join([]string{
		`{"time":"2026-11-25T12:00:00Z","type":"state","reason":"SYN_SENT -> ESTABLISHED","pod":"shop/client","workload":"shop/client","src":"10.244.1.10:40000","dst":"10.244.1.1:15001","orig":"10.96.0.10:80","service":"shop/product"}`,
		`{"time":"2026-11-25T12:00:01Z","type":"retransmit","reason":"2 segment(s)","pod":"shop/client","src":"10.244.1.10:40002","dst":"10.244.2.12:9000","dstPod":"legacy/sink","value":2}`,
		`{"time":"2026-11-25T12:00:02Z","type":"reset","reason":"received","pod":"shop/client","src":"10.244.1.10:40004","dst":"10.244.2.13:8080","dstPod":"legacy/aborter"}`,
		`{"time":"2026-11-25T12:00:03Z","type":"reset","reason":"sent","pod":"shop/product","src":"10.244.1.1:51000","dst":"10.244.1.11:8080","dstPod":"shop/product"}`,
		`{"time":"2026-11-25T12:00:04Z","type":"connect_fail","reason":"connection refused (in SYN_SENT)","pod":"shop/client","src":"10.244.1.10:40006","dst":"10.244.2.14:9999","dstPod":"legacy/closed","value":111}`,
	}, "\n")
	var b bytes.Buffer
	require.NoError(t, streamTrace(strings.NewReader(in), &b, "table", 0))
	golden(t, "trace_flows", b.Bytes())
}

func TestFlowsFlags(t *testing.T) {
	fl := []admin.Flow{{Pod: "a", SRTTUs: 5, Retransmits: 9, BytesSent: 1}, {Pod: "b", SRTTUs: 50, BytesSent: 100, BytesReceived: 100}}
	sortFlows(fl, "srtt")
	require.Equal(t, "b", fl[0].Pod)
	sortFlows(fl, "retransmits")
	require.Equal(t, "a", fl[0].Pod)
	sortFlows(fl, "bytes")
	require.Equal(t, "b", fl[0].Pod)
	for in, want := range map[string]string{"in": "inbound", "outbound": "outbound", "": ""} {
		got, err := parseDirection(in)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	_, err := parseDirection("sideways")
	require.Error(t, err)
	series := []admin.FlowSeries{{Reporter: "source"}, {Reporter: "destination"}}
	require.Equal(t, []admin.FlowSeries{{Reporter: "destination"}}, filterSeries(series, "inbound"))
	require.Equal(t, "1.5KiB", humanBytes(1536))
	require.Equal(t, "5.0MiB", humanBytes(5<<20))
}

func TestMatchService(t *testing.T) {
	for _, want := range []string{"product", "shop/product", "shop/product:80"} {
		require.True(t, matchService("shop/product:80", want), want)
	}
	require.False(t, matchService("shop/product:80", "prod"))
	require.False(t, matchService("shop/product:80", "other/product"))
}
