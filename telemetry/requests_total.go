package telemetry

import "github.com/prometheus/client_golang/prometheus"

// RequestsTotal is skein_requests_total: requests handled by the node proxy,
// as seen by the reporter (the client's node or the destination's).
type RequestsTotal struct {
	vec *prometheus.CounterVec
}

var _ prometheus.Collector = (*RequestsTotal)(nil)

// NewRequestsTotal returns the collector.
func NewRequestsTotal() *RequestsTotal {
	return &RequestsTotal{vec: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "skein_requests_total",
		Help: "Requests handled by the node proxy, by source and destination workload, response code and flags.",
	}, requestLabelNames)}
}

// Observe counts one request.
func (c *RequestsTotal) Observe(l *RequestLabels) { c.vec.WithLabelValues(l.values()...).Inc() }

// Describe implements prometheus.Collector.
func (c *RequestsTotal) Describe(ch chan<- *prometheus.Desc) { c.vec.Describe(ch) }

// Collect implements prometheus.Collector.
func (c *RequestsTotal) Collect(ch chan<- prometheus.Metric) { c.vec.Collect(ch) }
