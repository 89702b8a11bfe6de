package telemetry

import "github.com/prometheus/client_golang/prometheus"

var bpfMapEntriesDesc = prometheus.NewDesc(
	"skein_bpf_map_entries",
	"Entries in each of the agent's BPF maps, counted at scrape time.",
	[]string{"map"}, nil,
)

// BPFMapEntries is skein_bpf_map_entries.
type BPFMapEntries struct{ src MapSource }

var _ Collector = BPFMapEntries{}

// NewBPFMapEntries returns the collector.
func NewBPFMapEntries(src MapSource) BPFMapEntries { return BPFMapEntries{src} }

// Describe implements Collector.
func (c BPFMapEntries) Describe(ch chan<- *prometheus.Desc) { ch <- bpfMapEntriesDesc }

// Update implements Collector.
func (c BPFMapEntries) Update(ch chan<- prometheus.Metric) error {
	maps, err := c.src.MapFill()
	for _, m := range maps {
		if m.Entries >= 0 {
			ch <- prometheus.MustNewConstMetric(bpfMapEntriesDesc, prometheus.GaugeValue, float64(m.Entries), m.Name)
		}
	}
	return err
}
