package telemetry

import "github.com/prometheus/client_golang/prometheus"

var strictDropsDesc = prometheus.NewDesc(
	"skein_strict_drops_total",
	"New inbound plaintext connections to pods in STRICT mode dropped in the kernel.",
	nil, nil,
)

// StrictDrops is skein_strict_drops_total.
type StrictDrops struct{ src CaptureSource }

var _ Collector = StrictDrops{}

// NewStrictDrops returns the collector.
func NewStrictDrops(src CaptureSource) StrictDrops { return StrictDrops{src} }

// Describe implements Collector.
func (c StrictDrops) Describe(ch chan<- *prometheus.Desc) { ch <- strictDropsDesc }

// Update implements Collector.
func (c StrictDrops) Update(ch chan<- prometheus.Metric) error {
	n, err := c.src.StrictDrops()
	if err == nil {
		ch <- prometheus.MustNewConstMetric(strictDropsDesc, prometheus.CounterValue, float64(n))
	}
	return err
}
