package telemetry

import "github.com/prometheus/client_golang/prometheus"

var configUpdatesDesc = prometheus.NewDesc(
	"skein_config_updates_total",
	"Configuration updates applied, by result: applied cleanly, or with rejected objects.",
	[]string{"result"}, nil,
)

// ConfigUpdates is skein_config_updates_total.
type ConfigUpdates struct{ src ConfigSource }

var _ Collector = ConfigUpdates{}

// NewConfigUpdates returns the collector.
func NewConfigUpdates(src ConfigSource) ConfigUpdates { return ConfigUpdates{src} }

// Describe implements Collector.
func (c ConfigUpdates) Describe(ch chan<- *prometheus.Desc) { ch <- configUpdatesDesc }

// Update implements Collector.
func (c ConfigUpdates) Update(ch chan<- prometheus.Metric) error {
	st := c.src.ConfigState()
	ch <- prometheus.MustNewConstMetric(configUpdatesDesc, prometheus.CounterValue, float64(st.Updates-st.RejectedUpdates), "applied")
	ch <- prometheus.MustNewConstMetric(configUpdatesDesc, prometheus.CounterValue, float64(st.RejectedUpdates), "rejected")
	return nil
}
