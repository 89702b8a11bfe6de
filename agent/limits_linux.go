//go:build linux

package agent

import "github.com/skeinmesh/skein/telemetry"

var _ telemetry.RejectionSource = (*Agent)(nil)

// ProxyRejections implements telemetry.RejectionSource.
func (a *Agent) ProxyRejections() []telemetry.Rejection {
	rs := a.proxy.Rejections()
	out := make([]telemetry.Rejection, len(rs))
	for i, r := range rs {
		out[i] = telemetry.Rejection{Listener: r.Listener.String(), Reason: r.Reason.String(), Count: r.Count}
	}
	return out
}
