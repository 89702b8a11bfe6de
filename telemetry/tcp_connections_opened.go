package telemetry

import "github.com/prometheus/client_golang/prometheus"

var tcpConnectionsOpenedDesc = prometheus.NewDesc(
	"skein_tcp_connections_opened_total",
	"TCP connections of the node's meshed pods that were established, from the kernel (sockops).",
	tcpLabelNames, nil,
)

// TCPConnectionsOpened is skein_tcp_connections_opened_total.
type TCPConnectionsOpened struct{ src TCPSource }

var _ Collector = TCPConnectionsOpened{}

// NewTCPConnectionsOpened returns the collector.
func NewTCPConnectionsOpened(src TCPSource) TCPConnectionsOpened { return TCPConnectionsOpened{src} }

// Describe implements Collector.
func (c TCPConnectionsOpened) Describe(ch chan<- *prometheus.Desc) { ch <- tcpConnectionsOpenedDesc }

// Update implements Collector.
func (c TCPConnectionsOpened) Update(ch chan<- prometheus.Metric) error {
	return tcpCounter(ch, c.src, tcpConnectionsOpenedDesc, func(s *TCPStats) uint64 { return s.Opened })
}
