package telemetry

import "github.com/prometheus/client_golang/prometheus"

var tcpConnectDurationDesc = prometheus.NewDesc(
	"skein_tcp_connect_duration_seconds",
	"Time from a pod's connect (SYN sent) to an established TCP connection, in seconds.",
	tcpLabelNames, nil,
)

// TCPConnectDuration is skein_tcp_connect_duration_seconds.
type TCPConnectDuration struct{ src TCPSource }

var _ Collector = TCPConnectDuration{}

// NewTCPConnectDuration returns the collector.
func NewTCPConnectDuration(src TCPSource) TCPConnectDuration { return TCPConnectDuration{src} }

// Describe implements Collector.
func (c TCPConnectDuration) Describe(ch chan<- *prometheus.Desc) { ch <- tcpConnectDurationDesc }

// Update implements Collector.
func (c TCPConnectDuration) Update(ch chan<- prometheus.Metric) error {
	return tcpHistogram(ch, c.src, tcpConnectDurationDesc, func(s *TCPStats) *Histogram { return &s.Connect })
}
