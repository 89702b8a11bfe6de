package telemetry

import "github.com/prometheus/client_golang/prometheus"

var bpfMapMaxEntriesDesc = prometheus.NewDesc(
	"skein_bpf_map_max_entries",
	"Capacity of each of the agent's BPF maps; entries divided by this is the fill ratio.",
	[]string{"map"}, nil,
)

// BPFMapMaxEntries is skein_bpf_map_max_entries.
type BPFMapMaxEntries struct{ src MapSource }

var _ Collector = BPFMapMaxEntries{}

// NewBPFMapMaxEntries returns the collector.
func NewBPFMapMaxEntries(src MapSource) BPFMapMaxEntries { return BPFMapMaxEntries{src} }

// Describe implements Collector.
func (c BPFMapMaxEntries) Describe(ch chan<- *prometheus.Desc) { ch <- bpfMapMaxEntriesDesc }

// Update implements Collector.
func (c BPFMapMaxEntries) Update(ch chan<- prometheus.Metric) error {
	maps, err := c.src.MapFill()
	for _, m := range maps {
		// A map without a fixed size (socket storage) has no fill ratio.
		if m.Entries >= 0 && m.MaxEntries > 0 {
			ch <- prometheus.MustNewConstMetric(bpfMapMaxEntriesDesc, prometheus.GaugeValue, float64(m.MaxEntries), m.Name)
		}
	}
	return err
}
