package telemetry

import "github.com/prometheus/client_golang/prometheus"

// ResponseBytes is skein_response_bytes: the size of response bodies.
type ResponseBytes struct {
	vec *prometheus.HistogramVec
}

var _ prometheus.Collector = (*ResponseBytes)(nil)

// NewResponseBytes returns the collector.
func NewResponseBytes() *ResponseBytes {
	return &ResponseBytes{vec: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "skein_response_bytes",
		Help:    "Size of response bodies, in bytes.",
		Buckets: SizeBuckets,
	}, durationLabelNames)}
}

// Observe records one response body's size.
func (c *ResponseBytes) Observe(l *RequestLabels, n int64) {
	c.vec.WithLabelValues(l.durationValues()...).Observe(float64(n))
}

// Describe implements prometheus.Collector.
func (c *ResponseBytes) Describe(ch chan<- *prometheus.Desc) { c.vec.Describe(ch) }

// Collect implements prometheus.Collector.
func (c *ResponseBytes) Collect(ch chan<- prometheus.Metric) { c.vec.Collect(ch) }
