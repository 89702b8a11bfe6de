package telemetry

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
)

var buildInfoDesc = prometheus.NewDesc(
	"skein_build_info",
	"Build information of the running Skein agent; the value is always 1.",
	[]string{"version", "commit", "go_version"}, nil,
)

// BuildInfo exports skein_build_info.
type BuildInfo struct {
	Version, Commit string
}

var _ prometheus.Collector = BuildInfo{}

// Describe implements prometheus.Collector.
func (b BuildInfo) Describe(ch chan<- *prometheus.Desc) { ch <- buildInfoDesc }

// Collect implements prometheus.Collector.
func (b BuildInfo) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(buildInfoDesc, prometheus.GaugeValue, 1, b.Version, b.Commit, runtime.Version())
}
