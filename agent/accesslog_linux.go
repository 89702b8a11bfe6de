//go:build linux

package agent

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/skeinmesh/skein/agent/admin"
	"github.com/skeinmesh/skein/l7proxy"
	"github.com/skeinmesh/skein/telemetry"
	"github.com/skeinmesh/skein/telemetry/accesslog"
)

// maxErrorLen bounds the error text an access-log line carries.
const maxErrorLen = 256

// openAccessLog starts the access log the configuration asks for: the
// node-local store under <AccessLogDir>/<node>/ and the OTLP export.
func (a *Agent) openAccessLog(ctx context.Context) error {
	cfg := accesslog.Config{
		Filter: a.cfg.accessLogFilter(),
		OTLP:   accesslog.OTLPConfig{Endpoint: a.cfg.AccessLogOTLPEndpoint, Node: a.cfg.NodeName},
	}
	if a.cfg.AccessLogDir != "" {
		cfg.Store = accesslog.StoreConfig{Dir: filepath.Join(a.cfg.AccessLogDir, a.cfg.NodeName),
			MaxBytes: a.cfg.AccessLogMaxBytes, MaxAge: a.cfg.AccessLogMaxAge}
	}
	l, err := accesslog.New(ctx, cfg, a.log)
	if err != nil {
		return fmt.Errorf("start the access log (--accesslog-dir %q): %w", a.cfg.AccessLogDir, err)
	}
	a.accessLog = l
	if l.Enabled() {
		a.log.Info("access log", zap.Strings("sinks", l.Sinks()), zap.String("dir", cfg.Store.Dir),
			zap.Float64("sample_rate", a.cfg.AccessLogSampleRate), zap.Strings("status_classes", a.cfg.AccessLogStatusClasses),
			zap.Bool("sampled_traces", a.cfg.AccessLogSampledTraces))
	}
	return nil
}

// closeAccessLog writes what is queued (bounded) and closes the sinks; the
// proxy has drained by then.
func (a *Agent) closeAccessLog() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.accessLog.Close(ctx); err != nil {
		a.log.Warn("close the access log", zap.Error(err))
	}
}

// logRequest writes a request to the access log if the filter keeps it.
// It runs on the request's goroutine and never blocks.
func (a *Agent) logRequest(r *l7proxy.RequestRecord) {
	al := a.accessLog
	key := r.TraceID
	if key == "" {
		key = r.RequestID
	}
	if !al.Keep(r.Code, len(r.Flags) > 0, r.Sampled, key) {
		return
	}
	e := &accesslog.Entry{
		Start: r.Start, DurationMS: accesslog.DurationMS(r.Duration), Protocol: r.Protocol, Reporter: r.Reporter,
		TraceID: r.TraceID, SpanID: r.SpanID, RequestID: r.RequestID,
		Method: r.Method, Authority: r.Authority, ResponseCode: r.Code, GRPCStatus: r.GRPCStatus,
		ResponseFlags: r.FlagString(), BytesReceived: r.ReqBytes, BytesSent: r.RespBytes,
		UpstreamHost: addrString(r.Upstream), OriginalDst: addrString(r.OrigDst), Attempts: r.Attempts,
		ConnectionSecurityPolicy: r.Security, Error: errString(r.Err),
	}
	if r.Route != nil {
		e.Route = r.Route.String()
	}
	path := r.Path
	if r.Query != "" {
		path += "?" + r.Query
	}
	e.Path = al.Redact(path, e.Route)
	setWorkloads(e, r.Source, r.Dest, r.Service, r.PeerService)
	al.Record(e)
}

// logConnection writes a TCP connection to the access log if the filter
// keeps it.
func (a *Agent) logConnection(r *l7proxy.ConnRecord) {
	al := a.accessLog
	flagged := r.Flag != "" && r.Flag != l7proxy.FlagNone
	// No trace id: sample connections by their start.
	if !al.Keep(0, flagged, false, strconv.FormatInt(r.Start.UnixNano(), 16)) {
		return
	}
	e := &accesslog.Entry{
		Start: r.Start, DurationMS: accesslog.DurationMS(r.Duration), Protocol: "tcp", Reporter: r.Reporter,
		ResponseFlags: r.Flag, BytesReceived: r.SentBytes, BytesSent: r.RecvBytes,
		UpstreamHost: addrString(r.Upstream), OriginalDst: addrString(r.OrigDst),
		ConnectionSecurityPolicy: r.Security, Error: errString(r.Err),
	}
	setWorkloads(e, r.Source, r.Dest, r.Service, "")
	al.Record(e)
}

// setWorkloads fills in the source and destination as the request metrics
// label them.
func setWorkloads(e *accesslog.Entry, src, dst *l7proxy.Workload, svc *l7proxy.Service, peerService string) {
	if src != nil {
		e.SourceWorkload, e.SourceNamespace, e.SourcePrincipal, e.SourcePod = src.Name, src.Namespace, src.Identity, src.Pod
	}
	if dst != nil {
		e.DestinationWorkload, e.DestinationNamespace, e.DestinationPrincipal, e.DestinationPod = dst.Name, dst.Namespace, dst.Identity, dst.Pod
	}
	switch {
	case svc != nil:
		e.DestinationService = svc.Host
		if e.DestinationNamespace == "" {
			e.DestinationNamespace = svc.Namespace
		}
	case peerService != "":
		e.DestinationService = peerService
	}
}

func addrString(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return ""
	}
	return ap.String()
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > maxErrorLen {
		s = s[:maxErrorLen]
	}
	return s
}

// Logs implements admin.Backend: a query of the node's access-log store.
func (a *Agent) Logs(q admin.LogQuery) (admin.Logs, error) {
	store := a.accessLog.Store()
	if store == nil {
		return admin.Logs{Entries: []admin.LogEntry{}}, nil
	}
	aq := accesslog.Query{Workload: q.Workload, TraceID: q.TraceID, Status: q.Status, Since: q.Since, Until: q.Until, Limit: q.Limit}
	if err := aq.Validate(); err != nil {
		return admin.Logs{}, admin.BadRequest("%v", err)
	}
	res, err := store.Query(aq)
	if err != nil {
		return admin.Logs{}, fmt.Errorf("query the access log: %w", err)
	}
	out := admin.Logs{Enabled: true, Dir: store.Dir(), Entries: make([]admin.LogEntry, len(res.Entries)),
		Truncated: res.Truncated, Scanned: res.Scanned, Corrupt: res.Corrupt}
	for i, e := range res.Entries {
		out.Entries[i] = admin.LogEntry(e)
	}
	return out, nil
}

// AccessLogDropped implements telemetry.AccessLogSource.
func (a *Agent) AccessLogDropped() map[string]uint64 {
	if !a.accessLog.Enabled() {
		return nil
	}
	return a.accessLog.Dropped()
}

var (
	_ telemetry.AccessLogSource = (*Agent)(nil)
	_ l7proxy.Recorder          = (*Agent)(nil)
)
