package telemetry

import "github.com/prometheus/client_golang/prometheus"

var tcpConnectionsClosedDesc = prometheus.NewDesc(
	"skein_tcp_connections_closed_total",
	"TCP connections of the node's meshed pods that ended after being established, from the kernel (sockops).",
	tcpLabelNames, nil,
)

// TCPConnectionsClosed is skein_tcp_connections_closed_total.
type TCPConnectionsClosed struct{ src TCPSource }

var _ Collector = TCPConnectionsClosed{}

// NewTCPConnectionsClosed returns the collector.
func NewTCPConnectionsClosed(src TCPSource) TCPConnectionsClosed { return TCPConnectionsClosed{src} }

// Describe implements Collector.
func (c TCPConnectionsClosed) Describe(ch chan<- *prometheus.Desc) { ch <- tcpConnectionsClosedDesc }

// Update implements Collector.
func (c TCPConnectionsClosed) Update(ch chan<- prometheus.Metric) error {
	return tcpCounter(ch, c.src, tcpConnectionsClosedDesc, func(s *TCPStats) uint64 { return s.Closed })
}
