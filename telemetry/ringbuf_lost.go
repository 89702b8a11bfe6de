package telemetry

import "github.com/prometheus/client_golang/prometheus"

var ringbufLostDesc = prometheus.NewDesc(
	"skein_ringbuf_lost_events_total",
	"Trace events the kernel could not put in the ring buffer because it was full.",
	nil, nil,
)

// RingbufLost is skein_ringbuf_lost_events_total.
type RingbufLost struct{ src CaptureSource }

var _ Collector = RingbufLost{}

// NewRingbufLost returns the collector.
func NewRingbufLost(src CaptureSource) RingbufLost { return RingbufLost{src} }

// Describe implements Collector.
func (c RingbufLost) Describe(ch chan<- *prometheus.Desc) { ch <- ringbufLostDesc }

// Update implements Collector.
func (c RingbufLost) Update(ch chan<- prometheus.Metric) error {
	n, err := c.src.RingbufLost()
	if err == nil {
		ch <- prometheus.MustNewConstMetric(ringbufLostDesc, prometheus.CounterValue, float64(n))
	}
	return err
}
