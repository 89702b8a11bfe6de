package telemetry

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

var certExpiryDesc = prometheus.NewDesc(
	"skein_certificate_expiry_timestamp_seconds",
	"Unix time at which each workload certificate held by the agent expires.",
	[]string{"identity"}, nil,
)

// CertificateExpiry is skein_certificate_expiry_timestamp_seconds.
type CertificateExpiry struct{ src CertSource }

var _ Collector = CertificateExpiry{}

// NewCertificateExpiry returns the collector.
func NewCertificateExpiry(src CertSource) CertificateExpiry { return CertificateExpiry{src} }

// Describe implements Collector.
func (c CertificateExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- certExpiryDesc }

// Update implements Collector.
func (c CertificateExpiry) Update(ch chan<- prometheus.Metric) error {
	exp := c.src.CertExpiries()
	ids := make([]string, 0, len(exp))
	for id := range exp {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue, float64(exp[id].Unix()), id)
	}
	return nil
}
