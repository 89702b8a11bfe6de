package main

const flagsHelp = `Envoy response flags set by the proxy: NR no route, UH no healthy upstream, UF upstream connect failure, UT upstream timeout, UO circuit breaker overflow, UR upstream reset, DC downstream disconnect, UAEX denied by authorization. "-" means none.`

// nodeDashboard is what one node's agent sees: the requests and TCP flows of
// the pods on the selected nodes, and the agent's own health.
func nodeDashboard() dashboard {
	agent := sel(`node=~"$node"`)
	l7 := agent.and(`reporter="$reporter"`, `destination_namespace=~"$namespace"`, `destination_service=~"$service"`)
	l4 := l7 // the L4 series carry the same reporter and destination labels
	fivexx := `response_code=~"5.."`
	flagged := `response_flags!="-"`
	mtls := `connection_security_policy="mutual_tls"`
	byService := "destination_service"
	byDest := byDestination + ", destination_service"

	return dashboard{
		uid:   "skein-node",
		title: "Skein / Node",
		description: "Requests, TCP flows and agent health of the Skein agents on the selected nodes. " +
			"reporter=source shows what the node's pods sent; reporter=destination what they received.",
		vars: []variable{
			{name: "node", label: "Node", query: "label_values(skein_build_info, node)", multi: true},
			{name: "namespace", label: "Destination namespace", query: `label_values(skein_requests_total{node=~"$node"}, destination_namespace)`, multi: true},
			{name: "service", label: "Destination service", query: `label_values(skein_requests_total{node=~"$node", destination_namespace=~"$namespace"}, destination_service)`, multi: true},
			{name: "reporter", label: "Reporter", options: []string{"source", "destination"}},
		},
		rows: []row{
			{title: "Requests", panels: []panel{
				{kind: timeseries, title: "Request rate by destination service", unit: "reqps",
					description: "Requests per second handled by the proxy, per destination service.",
					targets:     []target{t(sum(byService, rate("skein_requests_total", l7)), "{{destination_service}}")}},
				{kind: timeseries, title: "Request rate by response code", unit: "reqps", stacked: true,
					description: "Requests per second by HTTP response code (gRPC answers 200; see grpc_status on the service dashboard).",
					targets:     []target{t(sum("response_code", rate("skein_requests_total", l7)), "{{response_code}}")}},
				{kind: timeseries, title: "Error ratio", unit: "percentunit", width: 8, max: 1,
					description: "Share of requests answered with a 5xx, and share the proxy itself flagged (response_flags != \"-\"): mesh-side failures such as no healthy upstream or connect failure.",
					targets: []target{
						t(ratio("", rate("skein_requests_total", l7.and(fivexx)), rate("skein_requests_total", l7)), "5xx"),
						t(ratio("", rate("skein_requests_total", l7.and(flagged)), rate("skein_requests_total", l7)), "response_flags != -"),
					}},
				{kind: timeseries, title: "5xx ratio by destination service", unit: "percentunit", width: 8, max: 1,
					description: "Share of requests to each destination service answered with a 5xx. The SkeinHighErrorRate alert fires on this ratio.",
					targets:     []target{t(ratio(byService, rate("skein_requests_total", l7.and(fivexx)), rate("skein_requests_total", l7)), "{{destination_service}}")}},
				{kind: timeseries, title: "Requests with response flags", unit: "reqps", width: 8,
					description: "Requests per second the proxy flagged, by flag. " + flagsHelp,
					targets:     []target{t(orZero(sum("response_flags", rate("skein_requests_total", l7.and(flagged)))), "{{response_flags}}")}},
			}},
			{title: "Latency", panels: []panel{
				{kind: timeseries, title: "Request latency by destination service", unit: "s",
					description: "p50, p95 and p99 of the request duration seen by the proxy, per destination service.",
					targets:     quantiles("skein_request_duration_seconds", l7, byService, "{{destination_service}}")},
				{kind: timeseries, title: "Request latency by source → destination workload", unit: "s",
					description: "p50, p95 and p99 of the request duration per pair of workloads.",
					targets:     quantiles("skein_request_duration_seconds", l7, byPair, legendPair)},
			}},
			{title: "TCP (eBPF)", panels: []panel{
				{kind: timeseries, title: "TCP connections", unit: "cps", width: 8,
					description: "TCP connections opened, closed and failed per second, from the kernel (sockops).",
					targets: []target{
						t(orZero(sum("", rate("skein_tcp_connections_opened_total", l4))), "opened"),
						t(orZero(sum("", rate("skein_tcp_connections_closed_total", l4))), "closed"),
						t(orZero(sum("", rate("skein_tcp_connections_failed_total", l4))), "failed"),
					}},
				{kind: timeseries, title: "TCP connection failures by destination", unit: "cps", width: 8,
					description: "Failed TCP connects per second per destination workload (refused, reset or timed out before establishment).",
					targets:     []target{t(orZero(sum(byDest, rate("skein_tcp_connections_failed_total", l4))), legendDestination+" {{destination_service}}")}},
				{kind: timeseries, title: "TCP connection failure ratio by destination", unit: "percentunit", width: 8, max: 1,
					description: "failed / (failed + opened) connects per destination workload. The SkeinConnectionFailureRate alert fires on this ratio.",
					targets:     []target{t(failureRatio(byDest, l4), legendDestination+" {{destination_service}}")}},
				{kind: timeseries, title: "TCP RTT by destination workload", unit: "s",
					description: "p50 and p99 of the kernel's smoothed round-trip time (srtt) of the flows to each destination workload.",
					targets:     quantiles("skein_tcp_rtt_seconds", l4, byDestination, legendDestination, "0.5", "0.99")},
				{kind: timeseries, title: "TCP connect duration by destination workload", unit: "s",
					description: "p50 and p99 of the time from connect() to an established connection.",
					targets:     quantiles("skein_tcp_connect_duration_seconds", l4, byDestination, legendDestination, "0.5", "0.99")},
				{kind: timeseries, title: "TCP retransmits by destination workload", unit: "cps", width: 8,
					description: "Retransmitted segments per second on the flows to each destination workload.",
					targets:     []target{t(orZero(sum(byDestination, rate("skein_tcp_retransmits_total", l4))), legendDestination)}},
				{kind: timeseries, title: "TCP retransmits per opened connection", unit: "short", width: 8,
					description: "Retransmits divided by connections opened in the same interval. Long-lived flows with few new connections make this ratio jumpy; read it with the retransmit rate. The SkeinTCPRetransmitRatio alert fires on it.",
					targets:     []target{t(ratio(byDestination, rate("skein_tcp_retransmits_total", l4), rate("skein_tcp_connections_opened_total", l4)), legendDestination)}},
				{kind: timeseries, title: "TCP resets by direction", unit: "cps", width: 8,
					description: "TCP resets per second, sent by the node's sockets or received from the peer.",
					targets:     []target{t(orZero(sum("direction", rate("skein_tcp_resets_total", l4))), "{{direction}}")}},
				{kind: timeseries, title: "TCP throughput by destination workload", unit: "Bps", width: 24,
					description: "Bytes per second on the flows to each destination workload. As in Istio, sent is what the destination sent back (responses) and received what it received (requests), whichever reporter is selected.",
					targets: []target{
						t(sum(byDestination, rate("skein_tcp_sent_bytes_total", l4)), "sent "+legendDestination),
						t(sum(byDestination, rate("skein_tcp_received_bytes_total", l4)), "received "+legendDestination),
					}},
			}},
			{title: "mTLS", panels: []panel{
				{kind: timeseries, title: "mTLS share of requests", unit: "percentunit", width: 8, max: 1,
					description: "Share of requests carried with connection_security_policy=mutual_tls. The SkeinMTLSCoverageDrop alert fires on the destination-reported share.",
					targets:     []target{t(ratio("", rate("skein_requests_total", l7.and(mtls)), rate("skein_requests_total", l7)), "requests")}},
				{kind: timeseries, title: "mTLS share of TCP connections", unit: "percentunit", width: 8, max: 1,
					description: "Share of opened TCP connections with connection_security_policy=mutual_tls, including opaque TCP that the proxy does not parse.",
					targets:     []target{t(ratio("", rate("skein_tcp_connections_opened_total", l4.and(mtls)), rate("skein_tcp_connections_opened_total", l4)), "connections")}},
				{kind: timeseries, title: "Plaintext requests by source → destination service", unit: "reqps", width: 8,
					description: "Requests per second without mTLS: from unmeshed clients (PERMISSIVE mode) or to unmeshed destinations.",
					targets:     []target{t(orZero(sum(bySource+", destination_service", rate("skein_requests_total", l7.and(`connection_security_policy="none"`)))), legendSource+" → {{destination_service}}")}},
			}},
			{title: "Agent health", panels: []panel{
				{kind: stat, title: "Agent up", width: 8,
					description: "Whether Prometheus scraped each agent's :15020/metrics successfully. The SkeinAgentDown alert fires when it is 0 or missing.",
					targets:     []target{{expr: `up{job="skein-agent", node=~"$node"}`, legend: "{{node}}", instant: true}}},
				{kind: table, title: "Agent build", width: 16,
					description: "Version, commit and Go version of the running agents.",
					targets:     []target{{expr: "max by (node, version, commit, go_version) (skein_build_info{" + string(agent) + "})", legend: "", instant: true}}},
				{kind: timeseries, title: "BPF map fill", unit: "percentunit", max: 1,
					description: "Entries over max_entries of each BPF map. A full map makes the datapath drop new entries: raise the map size or find the leak with agentctl status.",
					targets:     []target{t("max by (node, map) (skein_bpf_map_entries{"+string(agent)+"} / skein_bpf_map_max_entries{"+string(agent)+"})", "{{node}} {{map}}")}},
				{kind: timeseries, title: "Ring buffer lost events and lost map entries", unit: "cps",
					description: "Kernel events per second dropped because the ring buffer was full (agentctl trace misses them), and flow map entries per second the BPF programs could not add to a full map or that the LRU map of live flows evicted while open (those flows' figures are partly uncounted).",
					targets: []target{
						t(sum("node", rate("skein_ringbuf_lost_events_total", agent)), "{{node}} ring buffer"),
						t(sum("node, map, reason", rate("skein_bpf_map_lost_entries_total", agent)), "{{node}} {{map}} {{reason}}"),
					}},
				{kind: timeseries, title: "Config generation", unit: "none", width: 8,
					description: "Generation of the configuration each agent serves; agents that lag behind the others missed an update.",
					targets:     []target{t("max by (node) (skein_config_generation{"+string(agent)+"})", "{{node}}")}},
				{kind: timeseries, title: "Time since the config was applied", unit: "s", width: 8,
					description: "Time since each agent applied the configuration generation it serves. After a change, agents whose line does not drop to zero have not applied it; the drop's lag behind the change is how long applying took.",
					targets:     []target{t("time() - max by (node) (skein_config_applied_timestamp_seconds{"+string(agent)+"})", "{{node}}")}},
				{kind: timeseries, title: "Config updates and rejected objects", unit: "none", width: 8,
					description: "Objects rejected by the last configuration update (the last good configuration keeps serving), and updates applied or rejected.",
					targets: []target{
						t("max by (node) (skein_config_rejected_objects{"+string(agent)+"})", "rejected objects {{node}}"),
						t(sum("node, result", increase("skein_config_updates_total", agent)), "updates {{result}} {{node}}"),
					}},
				{kind: timeseries, title: "Certificate time to expiry", unit: "s", width: 8, signed: true,
					description: "Time left before each workload certificate expires. Certificates renew at half-life, so this is a sawtooth; a line that keeps falling means renewal fails.",
					targets:     []target{t("min by (node, identity) (skein_certificate_expiry_timestamp_seconds{"+string(agent)+"}) - time()", "{{node}} {{identity}}")}},
				{kind: timeseries, title: "Capture verdicts", unit: "cps", stacked: true,
					description: "Outbound connects seen by the capture programs per second, by verdict. fail_open and fail_closed mean the proxy was not running.",
					targets:     []target{t(sum("verdict", rate("skein_capture_connects_total", agent)), "{{verdict}}")}},
				{kind: timeseries, title: "Authorization decisions and STRICT drops", unit: "cps",
					description: "Authorization policy decisions per second by action, and plaintext connections to meshed pods dropped in STRICT mode.",
					targets: []target{
						t(orZero(sum("action", rate("skein_authz_decisions_total", agent))), "authz {{action}}"),
						t(orZero(sum("", rate("skein_strict_drops_total", agent))), "STRICT drops"),
					}},
				{kind: timeseries, title: "Trace spans dropped", unit: "cps",
					description: "Spans per second dropped before export (queue full or OTLP endpoint unreachable).",
					targets:     []target{t(sum("node", rate("skein_trace_spans_dropped_total", agent)), "{{node}}")}},
			}},
		},
	}
}
