package telemetry

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DurationBuckets are the request duration buckets, in seconds: fine below
// 10ms, where a node proxy's cost shows, and up to a minute.
var DurationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// RequestDuration is skein_request_duration_seconds.
type RequestDuration struct {
	vec *prometheus.HistogramVec
}

var _ prometheus.Collector = (*RequestDuration)(nil)

// NewRequestDuration returns the collector.
func NewRequestDuration() *RequestDuration {
	return &RequestDuration{vec: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "skein_request_duration_seconds",
		Help:    "Time from the request's first byte at the proxy to the end of the response, in seconds.",
		Buckets: DurationBuckets,
	}, durationLabelNames)}
}

// Observe records one request's duration.
func (c *RequestDuration) Observe(l *RequestLabels, d time.Duration) {
	c.vec.WithLabelValues(l.durationValues()...).Observe(d.Seconds())
}

// Describe implements prometheus.Collector.
func (c *RequestDuration) Describe(ch chan<- *prometheus.Desc) { c.vec.Describe(ch) }

// Collect implements prometheus.Collector.
func (c *RequestDuration) Collect(ch chan<- prometheus.Metric) { c.vec.Collect(ch) }
