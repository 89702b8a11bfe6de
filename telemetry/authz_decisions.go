package telemetry

import "github.com/prometheus/client_golang/prometheus"

var authzDecisionsDesc = prometheus.NewDesc(
	"skein_authz_decisions_total",
	"Authorization decisions taken by the node proxy for traffic to local pods, by action.",
	[]string{"action"}, nil,
)

// AuthzDecisions is skein_authz_decisions_total.
type AuthzDecisions struct{ src ProxySource }

var _ Collector = AuthzDecisions{}

// NewAuthzDecisions returns the collector.
func NewAuthzDecisions(src ProxySource) AuthzDecisions { return AuthzDecisions{src} }

// Describe implements Collector.
func (c AuthzDecisions) Describe(ch chan<- *prometheus.Desc) { ch <- authzDecisionsDesc }

// Update implements Collector.
func (c AuthzDecisions) Update(ch chan<- prometheus.Metric) error {
	allowed, denied := c.src.AuthzDecisions()
	ch <- prometheus.MustNewConstMetric(authzDecisionsDesc, prometheus.CounterValue, float64(allowed), "allow")
	ch <- prometheus.MustNewConstMetric(authzDecisionsDesc, prometheus.CounterValue, float64(denied), "deny")
	return nil
}
