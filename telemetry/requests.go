package telemetry

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RequestMetrics are the four request metric families, fed together.
type RequestMetrics struct {
	Total    *RequestsTotal
	Duration *RequestDuration
	ReqSize  *RequestBytes
	RespSize *ResponseBytes

	// series caches each label set's children: looking them up in the
	// vectors builds label slices and hashes every value, per family and
	// per request; label sets repeat (bounded cardinality), so after the
	// first request of a set, Observe allocates nothing.
	mu     sync.RWMutex
	series map[RequestLabels]*requestSeries
}

// requestSeries are one label set's children of the four families.
type requestSeries struct {
	total                       prometheus.Counter
	duration, reqSize, respSize prometheus.Observer
}

// NewRequestMetrics returns the families, to be registered with Register.
func NewRequestMetrics() *RequestMetrics {
	return &RequestMetrics{
		Total: NewRequestsTotal(), Duration: NewRequestDuration(),
		ReqSize: NewRequestBytes(), RespSize: NewResponseBytes(),
		series: map[RequestLabels]*requestSeries{},
	}
}

// Observe records one finished request.
func (m *RequestMetrics) Observe(l *RequestLabels, d time.Duration, reqBytes, respBytes int64) {
	s := m.seriesOf(l)
	s.total.Inc()
	s.duration.Observe(d.Seconds())
	s.reqSize.Observe(float64(reqBytes))
	s.respSize.Observe(float64(respBytes))
}

func (m *RequestMetrics) seriesOf(l *RequestLabels) *requestSeries {
	m.mu.RLock()
	s := m.series[*l]
	m.mu.RUnlock()
	if s != nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s = m.series[*l]; s != nil {
		return s
	}
	v := l.durationValues()
	s = &requestSeries{
		total:    m.Total.vec.WithLabelValues(l.values()...),
		duration: m.Duration.vec.WithLabelValues(v...),
		reqSize:  m.ReqSize.vec.WithLabelValues(v...),
		respSize: m.RespSize.vec.WithLabelValues(v...),
	}
	m.series[*l] = s
	return s
}

// Collectors returns the families for registration.
func (m *RequestMetrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Total, m.Duration, m.ReqSize, m.RespSize}
}
