package telemetry

import "github.com/prometheus/client_golang/prometheus"

var tcpRTTDesc = prometheus.NewDesc(
	"skein_tcp_rtt_seconds",
	"Smoothed TCP round-trip time (srtt) of the flows, sampled at the handshake and then at most once a second per flow while it carries data, in seconds.",
	tcpLabelNames, nil,
)

// TCPRTT is skein_tcp_rtt_seconds.
type TCPRTT struct{ src TCPSource }

var _ Collector = TCPRTT{}

// NewTCPRTT returns the collector.
func NewTCPRTT(src TCPSource) TCPRTT { return TCPRTT{src} }

// Describe implements Collector.
func (c TCPRTT) Describe(ch chan<- *prometheus.Desc) { ch <- tcpRTTDesc }

// Update implements Collector.
func (c TCPRTT) Update(ch chan<- prometheus.Metric) error {
	return tcpHistogram(ch, c.src, tcpRTTDesc, func(s *TCPStats) *Histogram { return &s.RTT })
}
