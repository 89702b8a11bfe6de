// Command prometheus renders Skein's Prometheus rules: skein-rules.yaml.tmpl
// with thresholds.yaml as .Values (Helm's template syntax and data shape) into
// skein-rules.yaml, a plain rules file for rule_files, and prometheusrule.yaml,
// the same groups as a monitoring.coreos.com/v1 PrometheusRule.
//
// It refuses a template that reads a key thresholds.yaml lacks, and a key in
// thresholds.yaml that changes nothing in the output, so the documented
// thresholds and the rendered rules cannot drift apart. Run it through
// `go generate ./deploy`; the tests in package deploy fail when the committed
// files differ from its output and run promtool's unit tests in tests/.
//
// Usage:
//
//	go run ./deploy/prometheus -dir deploy/prometheus [-out DIR]
package main
