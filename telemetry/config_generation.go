package telemetry

import "github.com/prometheus/client_golang/prometheus"

var configGenerationDesc = prometheus.NewDesc(
	"skein_config_generation",
	"Generation of the configuration the agent serves; it increases with every applied update.",
	nil, nil,
)

// ConfigGeneration is skein_config_generation.
type ConfigGeneration struct{ src ConfigSource }

var _ Collector = ConfigGeneration{}

// NewConfigGeneration returns the collector.
func NewConfigGeneration(src ConfigSource) ConfigGeneration { return ConfigGeneration{src} }

// Describe implements Collector.
func (c ConfigGeneration) Describe(ch chan<- *prometheus.Desc) { ch <- configGenerationDesc }

// Update implements Collector.
func (c ConfigGeneration) Update(ch chan<- prometheus.Metric) error {
	ch <- prometheus.MustNewConstMetric(configGenerationDesc, prometheus.GaugeValue, float64(c.src.ConfigState().Generation))
	return nil
}
