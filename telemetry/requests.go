package telemetry

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RequestMetrics are the four request metric families, fed together.
type RequestMetrics struct {
	Total    *RequestsTotal
	Duration *RequestDuration
	ReqSize  *RequestBytes
	RespSize *ResponseBytes
}

// NewRequestMetrics returns the families, to be registered with Register.
func NewRequestMetrics() *RequestMetrics {
	return &RequestMetrics{
		Total: NewRequestsTotal(), Duration: NewRequestDuration(),
		ReqSize: NewRequestBytes(), RespSize: NewResponseBytes(),
	}
}

// Observe records one finished request.
func (m *RequestMetrics) Observe(l *RequestLabels, d time.Duration, reqBytes, respBytes int64) {
	m.Total.Observe(l)
	m.Duration.Observe(l, d)
	m.ReqSize.Observe(l, reqBytes)
	m.RespSize.Observe(l, respBytes)
}

// Collectors returns the families for registration.
func (m *RequestMetrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Total, m.Duration, m.ReqSize, m.RespSize}
}
