package telemetry

import "github.com/prometheus/client_golang/prometheus"

var tcpRetransmitsDesc = prometheus.NewDesc(
	"skein_tcp_retransmits_total",
	"TCP segments the reporter's pod retransmitted, SYNs included, from the kernel.",
	tcpLabelNames, nil,
)

// TCPRetransmits is skein_tcp_retransmits_total.
type TCPRetransmits struct{ src TCPSource }

var _ Collector = TCPRetransmits{}

// NewTCPRetransmits returns the collector.
func NewTCPRetransmits(src TCPSource) TCPRetransmits { return TCPRetransmits{src} }

// Describe implements Collector.
func (c TCPRetransmits) Describe(ch chan<- *prometheus.Desc) { ch <- tcpRetransmitsDesc }

// Update implements Collector.
func (c TCPRetransmits) Update(ch chan<- prometheus.Metric) error {
	return tcpCounter(ch, c.src, tcpRetransmitsDesc, func(s *TCPStats) uint64 { return s.Retransmits })
}
