package telemetry

import "github.com/prometheus/client_golang/prometheus"

var tcpResetsDesc = prometheus.NewDesc(
	"skein_tcp_resets_total",
	"TCP reset segments of the flows, sent by the reporter's pod (direction=sent) or received from the peer (direction=received), from the kernel.",
	append(append([]string(nil), tcpLabelNames...), "direction"), nil,
)

// TCPResets is skein_tcp_resets_total.
type TCPResets struct{ src TCPSource }

var _ Collector = TCPResets{}

// NewTCPResets returns the collector.
func NewTCPResets(src TCPSource) TCPResets { return TCPResets{src} }

// Describe implements Collector.
func (c TCPResets) Describe(ch chan<- *prometheus.Desc) { ch <- tcpResetsDesc }

// Update implements Collector.
func (c TCPResets) Update(ch chan<- prometheus.Metric) error {
	series, err := c.src.TCPSeries()
	if err != nil {
		return err
	}
	for i := range series {
		s := &series[i]
		v := s.Labels.values()
		ch <- prometheus.MustNewConstMetric(tcpResetsDesc, prometheus.CounterValue, float64(s.Stats.ResetsSent), append(v, "sent")...)
		ch <- prometheus.MustNewConstMetric(tcpResetsDesc, prometheus.CounterValue, float64(s.Stats.ResetsReceived), append(v, "received")...)
	}
	return nil
}
