package telemetry

import "github.com/prometheus/client_golang/prometheus"

var tcpSentBytesDesc = prometheus.NewDesc(
	"skein_tcp_sent_bytes_total",
	"Payload bytes the destination sent to the source over TCP (responses), acknowledged, from the kernel.",
	tcpLabelNames, nil,
)

// TCPSentBytes is skein_tcp_sent_bytes_total.
type TCPSentBytes struct{ src TCPSource }

var _ Collector = TCPSentBytes{}

// NewTCPSentBytes returns the collector.
func NewTCPSentBytes(src TCPSource) TCPSentBytes { return TCPSentBytes{src} }

// Describe implements Collector.
func (c TCPSentBytes) Describe(ch chan<- *prometheus.Desc) { ch <- tcpSentBytesDesc }

// Update implements Collector.
func (c TCPSentBytes) Update(ch chan<- prometheus.Metric) error {
	return tcpCounter(ch, c.src, tcpSentBytesDesc, func(s *TCPStats) uint64 { return s.SentBytes })
}
