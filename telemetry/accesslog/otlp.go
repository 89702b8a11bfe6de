package accesslog

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"
)

// OTLPConfig configures the export of entries as OTLP logs.
type OTLPConfig struct {
	// Endpoint is the OTLP/gRPC collector, host:port (plaintext, as the
	// span export). Empty: no export.
	Endpoint string
	// Node names the node in the records' resource.
	Node string
	// Timeout bounds one export. Zero: 10s.
	Timeout time.Duration
	// Exporter overrides the OTLP exporter (tests).
	Exporter sdklog.Exporter
}

// OTLPSink exports entries as OTLP log records: the body is a one-line
// summary, the fields are attributes named as the JSON line's, the trace
// and span ids are the record's own so backends link logs and traces.
type OTLPSink struct {
	exp      sdklog.Exporter
	provider *sdklog.LoggerProvider
	logger   otellog.Logger
	proc     *collector
	timeout  time.Duration
}

var _ Sink = (*OTLPSink)(nil)

// NewOTLPSink returns a sink exporting to cfg.Endpoint. The gRPC
// connection is made lazily: an unreachable collector costs dropped
// entries, not a failed start.
func NewOTLPSink(ctx context.Context, cfg OTLPConfig) (*OTLPSink, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	exp := cfg.Exporter
	if exp == nil {
		if cfg.Endpoint == "" {
			return nil, errors.New("access log OTLP export: an endpoint is required")
		}
		var err error
		// The queue in front of the sink does the buffering; the
		// exporter's own retries would only hold it up.
		exp, err = otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(cfg.Endpoint), otlploggrpc.WithInsecure(),
			otlploggrpc.WithTimeout(cfg.Timeout), otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false}))
		if err != nil {
			return nil, fmt.Errorf("access log OTLP export: create exporter: %w", err)
		}
	}
	res := sdkresource.NewWithAttributes("",
		attribute.String("service.name", "skein-proxy"),
		attribute.String("host.name", cfg.Node),
		attribute.String("k8s.node.name", cfg.Node),
	)
	proc := &collector{}
	provider := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(proc))
	return &OTLPSink{
		exp:      exp,
		provider: provider,
		logger:   provider.Logger("github.com/skeinmesh/skein/telemetry/accesslog"),
		proc:     proc,
		timeout:  cfg.Timeout,
	}, nil
}

// Write implements Sink: one export per batch.
func (s *OTLPSink) Write(batch []*Entry) error {
	now := time.Now()
	for _, e := range batch {
		s.logger.Emit(spanContext(e), toRecord(e, now))
	}
	records := s.proc.take()
	if len(records) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	return s.exp.Export(ctx, records)
}

// Flush implements Sink; every Write exports at once.
func (s *OTLPSink) Flush() error { return nil }

// Close implements Sink.
func (s *OTLPSink) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	return errors.Join(s.provider.Shutdown(ctx), s.exp.Shutdown(ctx))
}

// spanContext carries the entry's trace and span ids to the SDK, which
// takes a record's ids from the context it is emitted with.
func spanContext(e *Entry) context.Context {
	ctx := context.Background()
	tid, err1 := trace.TraceIDFromHex(e.TraceID)
	sid, err2 := trace.SpanIDFromHex(e.SpanID)
	if err1 != nil || err2 != nil {
		return ctx
	}
	return trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, Remote: true}))
}

func toRecord(e *Entry, now time.Time) otellog.Record {
	var r otellog.Record
	r.SetEventName("skein.access")
	r.SetTimestamp(e.Start)
	r.SetObservedTimestamp(now)
	switch {
	case e.Failed():
		r.SetSeverity(otellog.SeverityError)
		r.SetSeverityText("ERROR")
	case e.ResponseCode >= 400:
		r.SetSeverity(otellog.SeverityWarn)
		r.SetSeverityText("WARN")
	default:
		r.SetSeverity(otellog.SeverityInfo)
		r.SetSeverityText("INFO")
	}
	r.SetBody(attribute.StringValue(Summary(e)))
	attrs := make([]attribute.KeyValue, 0, 32)
	str := func(k, v string) {
		if v != "" {
			attrs = append(attrs, attribute.String(k, v))
		}
	}
	attrs = append(attrs,
		attribute.Float64("duration_ms", e.DurationMS),
		attribute.String("protocol", e.Protocol),
		attribute.String("reporter", e.Reporter),
		attribute.String("response_flags", flagsOrDash(e.ResponseFlags)),
		attribute.Int64("bytes_received", e.BytesReceived),
		attribute.Int64("bytes_sent", e.BytesSent))
	str("request_id", e.RequestID)
	str("source_workload", e.SourceWorkload)
	str("source_namespace", e.SourceNamespace)
	str("source_principal", e.SourcePrincipal)
	str("source_pod", e.SourcePod)
	str("destination_workload", e.DestinationWorkload)
	str("destination_namespace", e.DestinationNamespace)
	str("destination_principal", e.DestinationPrincipal)
	str("destination_pod", e.DestinationPod)
	str("destination_service", e.DestinationService)
	str("route", e.Route)
	str("method", e.Method)
	str("authority", e.Authority)
	str("path", e.Path)
	if e.ResponseCode != 0 {
		attrs = append(attrs, attribute.Int("response_code", e.ResponseCode))
	}
	str("grpc_status", e.GRPCStatus)
	str("upstream_host", e.UpstreamHost)
	str("original_dst", e.OriginalDst)
	str("connection_security_policy", e.ConnectionSecurityPolicy)
	str("error", e.Error)
	r.AddAttributes(attrs...)
	return r
}

func flagsOrDash(f string) string {
	if f == "" {
		return "-"
	}
	return f
}

// Summary is a one-line description of an entry, as the OTLP body:
// "GET product.shop:80/items 200 - shop/client -> shop/product".
func Summary(e *Entry) string {
	what := e.Method + " " + e.Authority + e.Path
	if e.Protocol == "tcp" {
		what = "TCP " + e.OriginalDst
	}
	code := "-"
	if e.ResponseCode != 0 {
		code = strconv.Itoa(e.ResponseCode)
	}
	return what + " " + code + " " + flagsOrDash(e.ResponseFlags) + " " +
		workload(e.SourceNamespace, e.SourceWorkload) + " -> " + workload(e.DestinationNamespace, e.DestinationWorkload)
}

func workload(ns, name string) string {
	switch {
	case name == "":
		return "-"
	case ns == "":
		return name
	}
	return ns + "/" + name
}

// collector is a processor that keeps what is emitted for the sink to
// export in one call: the sink's queue is the only buffer.
type collector struct {
	mu      sync.Mutex
	records []sdklog.Record
}

var _ sdklog.Processor = (*collector)(nil)

func (c *collector) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }

func (c *collector) OnEmit(_ context.Context, r *sdklog.Record) error {
	c.mu.Lock()
	c.records = append(c.records, r.Clone())
	c.mu.Unlock()
	return nil
}

func (c *collector) take() []sdklog.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.records
	c.records = nil
	return out
}

func (c *collector) Shutdown(context.Context) error   { return nil }
func (c *collector) ForceFlush(context.Context) error { return nil }
