// Command grafana builds Skein's Grafana dashboards, skein-node.json and
// skein-service.json, and configmap.yaml, the ConfigMap that carries both to
// the Grafana sidecar (label grafana_dashboard: "1").
//
// The dashboards are Go values rather than hand-edited JSON so that every
// panel is one line of title and PromQL, the queries share their selectors,
// and the layout is computed. Run it through `go generate ./deploy`; the tests
// in package deploy fail when the committed files differ from its output, and
// check every query against the telemetry contract.
//
// Usage:
//
//	go run ./deploy/grafana -out deploy/grafana
package main
