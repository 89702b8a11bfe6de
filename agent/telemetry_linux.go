//go:build linux

package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/skeinmesh/skein/l7proxy"
	"github.com/skeinmesh/skein/telemetry"
)

// registerMetrics registers every collector of the exporter.
func (a *Agent) registerMetrics() {
	a.requests = telemetry.NewRequestMetrics()
	a.registry.MustRegister(a.requests.Collectors()...)
	a.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		telemetry.BuildInfo{Version: a.cfg.Version, Commit: a.cfg.Commit},
		telemetry.NewNode(map[string]telemetry.Collector{
			"bpf_map_entries":     telemetry.NewBPFMapEntries(a),
			"bpf_map_max_entries": telemetry.NewBPFMapMaxEntries(a),
			"capture_connects":    telemetry.NewCaptureConnects(a),
			"strict_drops":        telemetry.NewStrictDrops(a),
			"ringbuf_lost":        telemetry.NewRingbufLost(a),
			"config_generation":   telemetry.NewConfigGeneration(a),
			"config_rejected":     telemetry.NewConfigRejected(a),
			"config_updates":      telemetry.NewConfigUpdates(a),
			"config_applied":      telemetry.NewConfigApplied(a),
			"certificate_expiry":  telemetry.NewCertificateExpiry(a),
			"authz_decisions":     telemetry.NewAuthzDecisions(a),
			"trace_spans_dropped": telemetry.NewTraceSpansDropped(a),
			"accesslog_dropped":   telemetry.NewAccessLogDropped(a),
			"proxy_rejected":      telemetry.NewProxyRejected(a),
		}),
	)
}

var (
	_ telemetry.MapSource     = (*Agent)(nil)
	_ telemetry.CaptureSource = (*Agent)(nil)
	_ telemetry.ConfigSource  = (*Agent)(nil)
	_ telemetry.CertSource    = (*Agent)(nil)
	_ telemetry.ProxySource   = (*Agent)(nil)
)

// MapFill implements telemetry.MapSource.
func (a *Agent) MapFill() ([]telemetry.MapFill, error) {
	var out []telemetry.MapFill
	for _, m := range mapStatus(a.datapath.Maps()) {
		out = append(out, telemetry.MapFill{Name: m.Name, Entries: m.Entries, MaxEntries: int(m.MaxEntries)})
	}
	return out, nil
}

// CaptureVerdicts implements telemetry.CaptureSource.
func (a *Agent) CaptureVerdicts() (map[string]uint64, error) {
	v, err := a.datapath.Verdicts()
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(v))
	for k, n := range v {
		out[k.String()] = n
	}
	return out, nil
}

// StrictDrops implements telemetry.CaptureSource.
func (a *Agent) StrictDrops() (uint64, error) {
	dropped, _, err := a.datapath.StrictStats()
	return dropped, err
}

// RingbufLost implements telemetry.CaptureSource.
func (a *Agent) RingbufLost() (uint64, error) { return a.traceMaps.LostCount() }

// ConfigState implements telemetry.ConfigSource.
func (a *Agent) ConfigState() telemetry.ConfigState {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	return telemetry.ConfigState{
		Generation: a.cfgStat.Generation, Rejected: len(a.cfgStat.Errors),
		Updates: a.updatesApplied, RejectedUpdates: a.updatesRejected,
		Applied: a.cfgStat.GenerationApplied,
	}
}

// CertExpiries implements telemetry.CertSource.
func (a *Agent) CertExpiries() map[string]time.Time {
	out := map[string]time.Time{}
	if a.certs == nil {
		return out
	}
	for _, c := range a.certs.Status() {
		if !c.NotAfter.IsZero() {
			out[c.Identity] = c.NotAfter
		}
	}
	return out
}

// SpansDropped implements telemetry.TraceSource.
func (a *Agent) SpansDropped() uint64 {
	if a.tracing == nil {
		return 0
	}
	return a.tracing.Dropped()
}

// AuthzDecisions implements telemetry.ProxySource.
func (a *Agent) AuthzDecisions() (allowed, denied uint64) {
	s := a.proxy.Stats()
	return uint64(s.AuthzAllowed), uint64(s.AuthzDenied)
}

// RecordRequest implements l7proxy.RequestRecorder: request metrics and
// the access log.
func (a *Agent) RecordRequest(r *l7proxy.RequestRecord) {
	l := telemetry.RequestLabels{
		Reporter:        r.Reporter,
		RequestProtocol: r.Protocol,
		ResponseCode:    telemetry.ResponseCode(r.Code),
		GRPCStatus:      r.GRPCStatus,
		ResponseFlags:   r.FlagString(),
		SecurityPolicy:  r.Security,
	}
	if w := r.Source; w != nil {
		l.SourceWorkload, l.SourceNamespace, l.SourcePrincipal = w.Name, w.Namespace, w.Identity
	}
	if w := r.Dest; w != nil {
		l.DestinationWorkload, l.DestinationNamespace = w.Name, w.Namespace
	}
	if s := r.Service; s != nil {
		l.DestinationService = s.Host
		if l.DestinationNamespace == "" {
			l.DestinationNamespace = s.Namespace
		}
	} else if r.PeerService != "" {
		l.DestinationService = r.PeerService
	}
	a.requests.Observe(&l, r.Duration, r.ReqBytes, r.RespBytes)
	a.noteRequestFailure(r)
	a.logRequest(r)
}

// RecordConnection implements l7proxy.Recorder: TCP connections in the
// access log and, when failed, in diagnose's recent failures.
func (a *Agent) RecordConnection(r l7proxy.ConnRecord) {
	a.noteConnFailure(&r)
	a.logConnection(&r)
}

var _ l7proxy.RequestRecorder = (*Agent)(nil)
