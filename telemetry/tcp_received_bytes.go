package telemetry

import "github.com/prometheus/client_golang/prometheus"

var tcpReceivedBytesDesc = prometheus.NewDesc(
	"skein_tcp_received_bytes_total",
	"Payload bytes the destination received from the source over TCP (requests), from the kernel.",
	tcpLabelNames, nil,
)

// TCPReceivedBytes is skein_tcp_received_bytes_total.
type TCPReceivedBytes struct{ src TCPSource }

var _ Collector = TCPReceivedBytes{}

// NewTCPReceivedBytes returns the collector.
func NewTCPReceivedBytes(src TCPSource) TCPReceivedBytes { return TCPReceivedBytes{src} }

// Describe implements Collector.
func (c TCPReceivedBytes) Describe(ch chan<- *prometheus.Desc) { ch <- tcpReceivedBytesDesc }

// Update implements Collector.
func (c TCPReceivedBytes) Update(ch chan<- prometheus.Metric) error {
	return tcpCounter(ch, c.src, tcpReceivedBytesDesc, func(s *TCPStats) uint64 { return s.ReceivedBytes })
}
