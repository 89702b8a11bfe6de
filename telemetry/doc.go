// Package telemetry exposes what the node sees: the Prometheus exporter on
// :15020 (/metrics, /healthz, /readyz) and the collectors behind it, one per
// metric family, each computing its values at scrape time.
//
// The package never imports the agent: the agent hands each collector the
// handles it reads (BPF maps, proxy counters) through small interfaces.
package telemetry
