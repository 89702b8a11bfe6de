package telemetry

import (
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector is one metric family computed at scrape time, as in
// node_exporter: Update sends the family's metrics and says whether it
// could read what it needed.
type Collector interface {
	Describe(ch chan<- *prometheus.Desc)
	Update(ch chan<- prometheus.Metric) error
}

var (
	scrapeSuccessDesc = prometheus.NewDesc(
		"skein_scrape_collector_success",
		"Whether a collector of the Skein agent succeeded at the last scrape (1) or failed (0).",
		[]string{"collector"}, nil,
	)
	scrapeDurationDesc = prometheus.NewDesc(
		"skein_scrape_collector_duration_seconds",
		"How long a collector of the Skein agent took at the last scrape.",
		[]string{"collector"}, nil,
	)
)

// Node runs the scrape-time collectors. A failed collector reports
// skein_scrape_collector_success 0 and never fails the whole scrape.
type Node struct {
	names      []string
	collectors map[string]Collector
}

var _ prometheus.Collector = (*Node)(nil)

// NewNode returns a collector over the named collectors.
func NewNode(collectors map[string]Collector) *Node {
	n := &Node{collectors: collectors}
	for name := range collectors {
		n.names = append(n.names, name)
	}
	sort.Strings(n.names)
	return n
}

// Describe implements prometheus.Collector.
func (n *Node) Describe(ch chan<- *prometheus.Desc) {
	ch <- scrapeSuccessDesc
	ch <- scrapeDurationDesc
	for _, name := range n.names {
		n.collectors[name].Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (n *Node) Collect(ch chan<- prometheus.Metric) {
	for _, name := range n.names {
		start := time.Now()
		err := n.collectors[name].Update(ch)
		ok := 1.0
		if err != nil {
			ok = 0
		}
		ch <- prometheus.MustNewConstMetric(scrapeSuccessDesc, prometheus.GaugeValue, ok, name)
		ch <- prometheus.MustNewConstMetric(scrapeDurationDesc, prometheus.GaugeValue, time.Since(start).Seconds(), name)
	}
}
