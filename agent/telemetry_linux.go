//go:build linux

package agent

import (
	"slices"
	"time"

	"github.com/cilium/ebpf"
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
			"bpf_map_entries":      telemetry.NewBPFMapEntries(a),
			"bpf_map_max_entries":  telemetry.NewBPFMapMaxEntries(a),
			"bpf_map_lost_entries": telemetry.NewBPFMapLostEntries(a),
			"capture_connects":     telemetry.NewCaptureConnects(a),
			"strict_drops":         telemetry.NewStrictDrops(a),
			"ringbuf_lost":         telemetry.NewRingbufLost(a),
			"config_generation":    telemetry.NewConfigGeneration(a),
			"config_rejected":      telemetry.NewConfigRejected(a),
			"config_updates":       telemetry.NewConfigUpdates(a),
			"config_applied":       telemetry.NewConfigApplied(a),
			"certificate_expiry":   telemetry.NewCertificateExpiry(a),
			"authz_decisions":      telemetry.NewAuthzDecisions(a),
			"trace_spans_dropped":  telemetry.NewTraceSpansDropped(a),
			"accesslog_dropped":    telemetry.NewAccessLogDropped(a),
			"proxy_rejected":       telemetry.NewProxyRejected(a),

			"tcp_connections_opened": telemetry.NewTCPConnectionsOpened(a),
			"tcp_connections_closed": telemetry.NewTCPConnectionsClosed(a),
			"tcp_connections_failed": telemetry.NewTCPConnectionsFailed(a),
			"tcp_sent_bytes":         telemetry.NewTCPSentBytes(a),
			"tcp_received_bytes":     telemetry.NewTCPReceivedBytes(a),
			"tcp_retransmits":        telemetry.NewTCPRetransmits(a),
			"tcp_resets":             telemetry.NewTCPResets(a),
			"tcp_rtt":                telemetry.NewTCPRTT(a),
			"tcp_connect_duration":   telemetry.NewTCPConnectDuration(a),
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

// MapFill implements telemetry.MapSource: the maps that fill up as
// entries come and go (arrays are always "full" and the ring buffer reports
// its losses separately), with the flow maps' own counts.
func (a *Agent) MapFill() ([]telemetry.MapFill, error) {
	var out []telemetry.MapFill
	for _, m := range mapStatus(a.datapath.Maps()) {
		switch m.Type {
		case ebpf.Array.String(), ebpf.PerCPUArray.String(), ebpf.RingBuf.String():
			continue
		}
		out = append(out, telemetry.MapFill{Name: m.Name, Entries: m.Entries, MaxEntries: int(m.MaxEntries)})
	}
	flows, err := a.flowMapFill()
	return append(out, flows...), err
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
	// A request answered with UF: the proxy's connect for it failed (an
	// HTTP/1 or HTTP/2 request needs a connection only when the pool has
	// none, so a UF request stands for at least one failed connect).
	if slices.Contains(r.Flags, l7proxy.FlagUpstreamConnect) {
		a.noteProxyConnectFailure(r.Source, r.OrigDst, r.Reporter)
	}
	a.noteRequestFailure(r)
	a.logRequest(r)
}

// RecordConnection implements l7proxy.Recorder: TCP connections in the
// access log and, when failed, in diagnose's recent failures.
func (a *Agent) RecordConnection(r l7proxy.ConnRecord) {
	a.noteConnFailure(&r)
	// Opaque TCP: UF and UT are set only when connecting failed.
	if r.Flag == l7proxy.FlagUpstreamConnect || r.Flag == l7proxy.FlagUpstreamTimeout {
		a.noteProxyConnectFailure(r.Source, r.OrigDst, r.Reporter)
	}
	a.logConnection(&r)
}

var _ l7proxy.RequestRecorder = (*Agent)(nil)
