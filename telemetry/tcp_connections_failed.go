package telemetry

import "github.com/prometheus/client_golang/prometheus"

var tcpConnectionsFailedDesc = prometheus.NewDesc(
	"skein_tcp_connections_failed_total",
	"TCP connects that never got established: seen by the kernel for the pod's own connects, and by the node proxy for its connects on behalf of captured ones.",
	tcpLabelNames, nil,
)

// TCPConnectionsFailed is skein_tcp_connections_failed_total.
type TCPConnectionsFailed struct{ src TCPSource }

var _ Collector = TCPConnectionsFailed{}

// NewTCPConnectionsFailed returns the collector.
func NewTCPConnectionsFailed(src TCPSource) TCPConnectionsFailed { return TCPConnectionsFailed{src} }

// Describe implements Collector.
func (c TCPConnectionsFailed) Describe(ch chan<- *prometheus.Desc) { ch <- tcpConnectionsFailedDesc }

// Update implements Collector.
func (c TCPConnectionsFailed) Update(ch chan<- prometheus.Metric) error {
	return tcpCounter(ch, c.src, tcpConnectionsFailedDesc, func(s *TCPStats) uint64 { return s.Failed })
}
