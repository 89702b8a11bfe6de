package telemetry

import "github.com/prometheus/client_golang/prometheus"

// SizeBuckets are the message size buckets, in bytes.
var SizeBuckets = []float64{1, 10, 100, 1000, 10000, 100000, 1e6, 1e7}

// RequestBytes is skein_request_bytes: the size of request bodies.
type RequestBytes struct {
	vec *prometheus.HistogramVec
}

var _ prometheus.Collector = (*RequestBytes)(nil)

// NewRequestBytes returns the collector.
func NewRequestBytes() *RequestBytes {
	return &RequestBytes{vec: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "skein_request_bytes",
		Help:    "Size of request bodies, in bytes.",
		Buckets: SizeBuckets,
	}, durationLabelNames)}
}

// Observe records one request body's size.
func (c *RequestBytes) Observe(l *RequestLabels, n int64) {
	c.vec.WithLabelValues(l.durationValues()...).Observe(float64(n))
}

// Describe implements prometheus.Collector.
func (c *RequestBytes) Describe(ch chan<- *prometheus.Desc) { c.vec.Describe(ch) }

// Collect implements prometheus.Collector.
func (c *RequestBytes) Collect(ch chan<- prometheus.Metric) { c.vec.Collect(ch) }
