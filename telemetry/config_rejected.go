package telemetry

import "github.com/prometheus/client_golang/prometheus"

var configRejectedDesc = prometheus.NewDesc(
	"skein_config_rejected_objects",
	"Objects rejected in the last configuration update; their last good versions keep serving.",
	nil, nil,
)

// ConfigRejected is skein_config_rejected_objects.
type ConfigRejected struct{ src ConfigSource }

var _ Collector = ConfigRejected{}

// NewConfigRejected returns the collector.
func NewConfigRejected(src ConfigSource) ConfigRejected { return ConfigRejected{src} }

// Describe implements Collector.
func (c ConfigRejected) Describe(ch chan<- *prometheus.Desc) { ch <- configRejectedDesc }

// Update implements Collector.
func (c ConfigRejected) Update(ch chan<- prometheus.Metric) error {
	ch <- prometheus.MustNewConstMetric(configRejectedDesc, prometheus.GaugeValue, float64(c.src.ConfigState().Rejected))
	return nil
}
