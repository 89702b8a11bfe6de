package telemetry

import "github.com/prometheus/client_golang/prometheus"

var bpfMapLostEntriesDesc = prometheus.NewDesc(
	"skein_bpf_map_lost_entries_total",
	"Entries the agent's BPF programs lost to map pressure: reason=\"insert_failed\" for entries they could not add to a full map, "+
		"\"evicted\" for entries an LRU map pushed out while still in use. Each is a flow or key whose figures went partly uncounted.",
	[]string{"map", "reason"}, nil,
)

// BPFMapLostEntries is skein_bpf_map_lost_entries_total.
type BPFMapLostEntries struct{ src MapSource }

var _ Collector = BPFMapLostEntries{}

// NewBPFMapLostEntries returns the collector.
func NewBPFMapLostEntries(src MapSource) BPFMapLostEntries { return BPFMapLostEntries{src} }

// Describe implements Collector.
func (c BPFMapLostEntries) Describe(ch chan<- *prometheus.Desc) { ch <- bpfMapLostEntriesDesc }

// Update implements Collector. Only the maps whose programs count their
// losses have series.
func (c BPFMapLostEntries) Update(ch chan<- prometheus.Metric) error {
	maps, err := c.src.MapFill()
	for _, m := range maps {
		if !m.CountsLosses {
			continue
		}
		ch <- prometheus.MustNewConstMetric(bpfMapLostEntriesDesc, prometheus.CounterValue, float64(m.InsertFailures), m.Name, "insert_failed")
		if m.LRU {
			ch <- prometheus.MustNewConstMetric(bpfMapLostEntriesDesc, prometheus.CounterValue, float64(m.Evicted), m.Name, "evicted")
		}
	}
	return err
}
