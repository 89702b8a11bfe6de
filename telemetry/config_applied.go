package telemetry

import "github.com/prometheus/client_golang/prometheus"

var configAppliedDesc = prometheus.NewDesc(
	"skein_config_applied_timestamp_seconds",
	"Time the configuration generation the agent serves was applied to its datapath and proxy, in seconds since the Unix epoch.",
	nil, nil,
)

// ConfigApplied is skein_config_applied_timestamp_seconds: with the time a
// change was written, it says how long the agent took to apply it. There is
// no series before the first generation is applied.
type ConfigApplied struct{ src ConfigSource }

var _ Collector = ConfigApplied{}

// NewConfigApplied returns the collector.
func NewConfigApplied(src ConfigSource) ConfigApplied { return ConfigApplied{src} }

// Describe implements Collector.
func (c ConfigApplied) Describe(ch chan<- *prometheus.Desc) { ch <- configAppliedDesc }

// Update implements Collector.
func (c ConfigApplied) Update(ch chan<- prometheus.Metric) error {
	t := c.src.ConfigState().Applied
	if t.IsZero() {
		return nil
	}
	ch <- prometheus.MustNewConstMetric(configAppliedDesc, prometheus.GaugeValue, float64(t.Unix())+float64(t.Nanosecond())/1e9)
	return nil
}
