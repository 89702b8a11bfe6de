// Package deploy holds what operators install next to the agent: the Grafana
// dashboards (grafana/) and the Prometheus recording and alerting rules
// (prometheus/), with the tests that keep them true to the telemetry contract
// in DESIGN.md ("Telemetry contracts").
//
// Nothing here is hand-written twice. The program in grafana/ builds both
// dashboards and the ConfigMap that carries them; the program in prometheus/
// renders skein-rules.yaml.tmpl with thresholds.yaml (Helm's .Values syntax,
// so a chart can reuse the template as is) into skein-rules.yaml and the
// PrometheusRule. `go generate ./deploy` re-renders everything and
// `go test ./deploy` fails while a committed file is stale.
//
// The tests check every dashboard query and alert against the metric names and
// labels of the contract, parse them with promtool, run the promtool rule unit
// tests in prometheus/tests, and run every panel query against a throwaway
// Prometheus that scrapes a synthetic exporter (skipped with the reason when
// promtool or prometheus is not installed: scripts/deps.sh installs both).
//
// DashboardQueries gives the end-to-end tests each panel's query, so they can
// require that it returns data from the lab's real exporter.
package deploy
