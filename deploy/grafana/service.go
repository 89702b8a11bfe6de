package main

// serviceDashboard is one destination service: its golden signals, who calls
// it and how, and the TCP flows to it.
func serviceDashboard() dashboard {
	s := sel(`node=~"$node"`).and(`reporter="$reporter"`, `destination_namespace="$namespace"`, `destination_service="$service"`)
	fivexx := `response_code=~"5.."`
	flagged := `response_flags!="-"`
	mtls := `connection_security_policy="mutual_tls"`
	requests := rate("skein_requests_total", s)

	return dashboard{
		uid:   "skein-service",
		title: "Skein / Service",
		description: "One destination service: request rate, errors and latency, broken down by source workload, and its TCP flows. " +
			"reporter=destination is the server-side view; reporter=source also counts requests that never reached it (no healthy upstream, connect failure).",
		vars: []variable{
			{name: "node", label: "Reporting node", query: "label_values(skein_build_info, node)", multi: true},
			{name: "namespace", label: "Namespace", query: "label_values(skein_requests_total, destination_namespace)"},
			{name: "service", label: "Service", query: `label_values(skein_requests_total{destination_namespace="$namespace"}, destination_service)`},
			{name: "reporter", label: "Reporter", options: []string{"destination", "source"}},
		},
		rows: []row{
			{title: "$service", panels: []panel{
				{kind: timeseries, title: "Request rate by response code", unit: "reqps", width: 8, stacked: true,
					description: "Requests per second to the service by HTTP response code.",
					targets:     []target{t(sum("response_code", requests), "{{response_code}}")}},
				{kind: timeseries, title: "Error ratio", unit: "percentunit", width: 8, max: 1,
					description: "Share of requests answered with a 5xx (SkeinHighErrorRate), and share the proxy flagged (response_flags != \"-\").",
					targets: []target{
						t(ratio("", rate("skein_requests_total", s.and(fivexx)), requests), "5xx"),
						t(ratio("", rate("skein_requests_total", s.and(flagged)), requests), "response_flags != -"),
					}},
				{kind: timeseries, title: "Request latency", unit: "s", width: 8,
					description: "p50, p95 and p99 of the request duration (SkeinHighP99Latency fires on p99).",
					targets:     quantiles("skein_request_duration_seconds", s, "", "")},
			}},
			{title: "Sources", panels: []panel{
				{kind: timeseries, title: "Request rate by source workload", unit: "reqps",
					description: "Requests per second from each calling workload.",
					targets:     []target{t(sum(bySource, requests), legendSource)}},
				{kind: timeseries, title: "5xx ratio by source workload", unit: "percentunit", max: 1,
					description: "Share of each caller's requests answered with a 5xx: one failing caller points at its requests, all of them at the service.",
					targets:     []target{t(ratio(bySource, rate("skein_requests_total", s.and(fivexx)), requests), legendSource)}},
				{kind: timeseries, title: "Request latency p99 by source workload", unit: "s",
					description: "p99 request duration per calling workload.",
					targets:     quantiles("skein_request_duration_seconds", s, bySource, legendSource, "0.99")},
				{kind: timeseries, title: "Requests with response flags by source workload", unit: "reqps",
					description: "Requests per second the proxy flagged, per caller and flag. " + flagsHelp,
					targets:     []target{t(orZero(sum(bySource+", response_flags", rate("skein_requests_total", s.and(flagged)))), legendSource+" {{response_flags}}")}},
				{kind: timeseries, title: "mTLS share of requests by source workload", unit: "percentunit", max: 1,
					description: "Share of each caller's requests carried over mutual TLS; plaintext callers are unmeshed or bypass the mesh.",
					targets:     []target{t(ratio(bySource, rate("skein_requests_total", s.and(mtls)), requests), legendSource)}},
				{kind: timeseries, title: "gRPC requests by status", unit: "reqps",
					description: "gRPC requests per second by grpc-status (0 is OK); 0 when the service has no gRPC traffic.",
					targets:     []target{t(orZero(sum("grpc_status", rate("skein_requests_total", s.and(`request_protocol="grpc"`)))), "{{grpc_status}}")}},
			}},
			{title: "Destination workloads", panels: []panel{
				{kind: timeseries, title: "Request rate by destination workload", unit: "reqps", width: 8,
					description: "How the balancer spread the service's requests over its workloads.",
					targets:     []target{t(sum(byDestination, requests), legendDestination)}},
				{kind: timeseries, title: "Request latency p99 by destination workload", unit: "s", width: 8,
					description: "p99 request duration per backing workload: one slow workload among fast ones is a bad rollout or a bad node.",
					targets:     quantiles("skein_request_duration_seconds", s, byDestination, legendDestination, "0.99")},
				{kind: timeseries, title: "Request and response size", unit: "bytes", width: 8,
					description: "p50 and p99 of request and response body sizes.",
					targets: append(
						quantiles("skein_request_bytes", s, "", "request", "0.5", "0.99"),
						quantiles("skein_response_bytes", s, "", "response", "0.5", "0.99")...)},
			}},
			{title: "TCP (eBPF) by source workload", panels: []panel{
				{kind: timeseries, title: "TCP connections opened by source workload", unit: "cps", width: 8,
					description: "New TCP connections per second to the service from each caller.",
					targets:     []target{t(sum(bySource, rate("skein_tcp_connections_opened_total", s)), legendSource)}},
				{kind: timeseries, title: "TCP connection failure ratio by source workload", unit: "percentunit", width: 8, max: 1,
					description: "failed / (failed + opened) connects per caller (SkeinConnectionFailureRate).",
					targets:     []target{t(failureRatio(bySource, s), legendSource)}},
				{kind: timeseries, title: "mTLS share of TCP connections by source workload", unit: "percentunit", width: 8, max: 1,
					description: "Share of each caller's TCP connections over mutual TLS, including opaque TCP.",
					targets:     []target{t(ratio(bySource, rate("skein_tcp_connections_opened_total", s.and(mtls)), rate("skein_tcp_connections_opened_total", s)), legendSource)}},
				{kind: timeseries, title: "TCP RTT by source workload", unit: "s",
					description: "p50 and p99 of the kernel's smoothed RTT per caller.",
					targets:     quantiles("skein_tcp_rtt_seconds", s, bySource, legendSource, "0.5", "0.99")},
				{kind: timeseries, title: "TCP connect duration by source workload", unit: "s",
					description: "p50 and p99 of the time to establish a connection, per caller.",
					targets:     quantiles("skein_tcp_connect_duration_seconds", s, bySource, legendSource, "0.5", "0.99")},
				{kind: timeseries, title: "TCP retransmits per opened connection by source workload", unit: "short", width: 8,
					description: "Retransmits divided by connections opened, per caller (SkeinTCPRetransmitRatio).",
					targets:     []target{t(ratio(bySource, rate("skein_tcp_retransmits_total", s), rate("skein_tcp_connections_opened_total", s)), legendSource)}},
				{kind: timeseries, title: "TCP resets by direction", unit: "cps", width: 8,
					description: "TCP resets per second on the service's flows, sent or received.",
					targets:     []target{t(orZero(sum("direction", rate("skein_tcp_resets_total", s))), "{{direction}}")}},
				{kind: timeseries, title: "TCP throughput by source workload", unit: "Bps", width: 8,
					description: "Bytes per second on the service's flows, per caller: sent by the service (responses) and received by it (requests).",
					targets: []target{
						t(sum(bySource, rate("skein_tcp_sent_bytes_total", s)), "sent "+legendSource),
						t(sum(bySource, rate("skein_tcp_received_bytes_total", s)), "received "+legendSource),
					}},
			}},
		},
	}
}
