package telemetry

import "github.com/prometheus/client_golang/prometheus"

var traceSpansDroppedDesc = prometheus.NewDesc(
	"skein_trace_spans_dropped_total",
	"Spans dropped because the export queue was full or the collector refused them; requests are never held for tracing.",
	nil, nil,
)

// TraceSource reads the span export counters.
type TraceSource interface {
	SpansDropped() uint64
}

// TraceSpansDropped is skein_trace_spans_dropped_total.
type TraceSpansDropped struct{ src TraceSource }

var _ Collector = TraceSpansDropped{}

// NewTraceSpansDropped returns the collector.
func NewTraceSpansDropped(src TraceSource) TraceSpansDropped { return TraceSpansDropped{src} }

// Describe implements Collector.
func (c TraceSpansDropped) Describe(ch chan<- *prometheus.Desc) { ch <- traceSpansDroppedDesc }

// Update implements Collector.
func (c TraceSpansDropped) Update(ch chan<- prometheus.Metric) error {
	ch <- prometheus.MustNewConstMetric(traceSpansDroppedDesc, prometheus.CounterValue, float64(c.src.SpansDropped()))
	return nil
}
