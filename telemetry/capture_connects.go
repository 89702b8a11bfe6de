package telemetry

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

var captureConnectsDesc = prometheus.NewDesc(
	"skein_capture_connects_total",
	"Connects of meshed pods seen by the capture programs, by verdict (redirected to the proxy, or why not).",
	[]string{"verdict"}, nil,
)

// CaptureConnects is skein_capture_connects_total, summed over CPUs at
// scrape time.
type CaptureConnects struct{ src CaptureSource }

var _ Collector = CaptureConnects{}

// NewCaptureConnects returns the collector.
func NewCaptureConnects(src CaptureSource) CaptureConnects { return CaptureConnects{src} }

// Describe implements Collector.
func (c CaptureConnects) Describe(ch chan<- *prometheus.Desc) { ch <- captureConnectsDesc }

// Update implements Collector.
func (c CaptureConnects) Update(ch chan<- prometheus.Metric) error {
	v, err := c.src.CaptureVerdicts()
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ch <- prometheus.MustNewConstMetric(captureConnectsDesc, prometheus.CounterValue, float64(v[k]), k)
	}
	return err
}
