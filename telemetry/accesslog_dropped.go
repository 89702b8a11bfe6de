package telemetry

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

var accessLogDroppedDesc = prometheus.NewDesc(
	"skein_accesslog_records_dropped_total",
	"Access-log records dropped because a sink's queue was full or the sink failed, by sink (store or otlp); requests are never held for logging.",
	[]string{"sink"}, nil,
)

// AccessLogSource reads the access log's drop counters.
type AccessLogSource interface {
	// AccessLogDropped counts dropped records by sink name; a sink that is
	// not configured is absent.
	AccessLogDropped() map[string]uint64
}

// AccessLogDropped is skein_accesslog_records_dropped_total.
type AccessLogDropped struct{ src AccessLogSource }

var _ Collector = AccessLogDropped{}

// NewAccessLogDropped returns the collector.
func NewAccessLogDropped(src AccessLogSource) AccessLogDropped { return AccessLogDropped{src} }

// Describe implements Collector.
func (c AccessLogDropped) Describe(ch chan<- *prometheus.Desc) { ch <- accessLogDroppedDesc }

// Update implements Collector.
func (c AccessLogDropped) Update(ch chan<- prometheus.Metric) error {
	dropped := c.src.AccessLogDropped()
	sinks := make([]string, 0, len(dropped))
	for s := range dropped {
		sinks = append(sinks, s)
	}
	sort.Strings(sinks)
	for _, s := range sinks {
		ch <- prometheus.MustNewConstMetric(accessLogDroppedDesc, prometheus.CounterValue, float64(dropped[s]), s)
	}
	return nil
}
