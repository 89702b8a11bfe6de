package telemetry

import "github.com/prometheus/client_golang/prometheus"

var proxyRejectedDesc = prometheus.NewDesc(
	"skein_proxy_rejected_total",
	"Client connections, requests and HTTP/2 streams the node proxy refused, by listener (outbound: captured pods, tunnel: peer nodes) and reason (header_too_large, uri_too_long, conn_limit, read_timeout, bad_request, h2_protocol, h2_reset_flood, tls_handshake).",
	[]string{"listener", "reason"}, nil,
)

// Rejection is one count of the proxy's refusals.
type Rejection struct {
	Listener, Reason string
	Count            uint64
}

// RejectionSource reads the proxy's refusal counters.
type RejectionSource interface {
	// ProxyRejections returns every (listener, reason) count, zeros
	// included, so that each series exists from the start.
	ProxyRejections() []Rejection
}

// ProxyRejected is skein_proxy_rejected_total.
type ProxyRejected struct{ src RejectionSource }

var _ Collector = ProxyRejected{}

// NewProxyRejected returns the collector.
func NewProxyRejected(src RejectionSource) ProxyRejected { return ProxyRejected{src} }

// Describe implements Collector.
func (c ProxyRejected) Describe(ch chan<- *prometheus.Desc) { ch <- proxyRejectedDesc }

// Update implements Collector.
func (c ProxyRejected) Update(ch chan<- prometheus.Metric) error {
	for _, r := range c.src.ProxyRejections() {
		ch <- prometheus.MustNewConstMetric(proxyRejectedDesc, prometheus.CounterValue, float64(r.Count), r.Listener, r.Reason)
	}
	return nil
}
