package l7proxy

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// RequestIDHeader is the request id every request carries past the proxy:
// kept if the client sent one, generated if not (as Envoy does).
const RequestIDHeader = "X-Request-Id"

// Tracing is the proxy's tracing setup. The zero value traces nothing but
// still generates request ids.
type Tracing struct {
	// Tracer records the spans; nil: no spans (trace context still passes
	// through untouched, since the proxy copies headers).
	Tracer trace.Tracer
	// Propagator extracts and injects trace context (W3C and B3).
	Propagator propagation.TextMapPropagator
}

// startSpan continues the request's trace (or starts one) with a span for
// this proxy hop, and writes the span's context into the request headers
// that go upstream. It also makes sure the request has an id.
func (p *Proxy) startSpan(r *http.Request, rec *RequestRecord, kind trace.SpanKind) (context.Context, trace.Span) {
	if r.Header.Get(RequestIDHeader) == "" {
		r.Header.Set(RequestIDHeader, newRequestID())
	}
	rec.RequestID = r.Header.Get(RequestIDHeader)
	t := p.cfg.Tracing
	if t.Tracer == nil || t.Propagator == nil {
		return r.Context(), trace.SpanFromContext(r.Context())
	}
	ctx := t.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	name := r.Method + " " + r.Host
	if rec.Protocol == "grpc" {
		name = strings.TrimPrefix(r.URL.Path, "/")
	}
	ctx, span := t.Tracer.Start(ctx, name, trace.WithSpanKind(kind))
	sc := span.SpanContext()
	if sc.IsValid() {
		rec.TraceID, rec.SpanID = sc.TraceID().String(), sc.SpanID().String()
		rec.Sampled = sc.IsSampled()
	}
	// Drop whatever trace headers came in, then write ours: the upstream
	// must see this hop as its parent, in the formats it may understand.
	for _, h := range t.Propagator.Fields() {
		r.Header.Del(h)
	}
	t.Propagator.Inject(ctx, propagation.HeaderCarrier(r.Header))
	return ctx, span
}

// endSpan records the outcome of a request on its span.
func endSpan(span trace.Span, rec *RequestRecord, kind trace.SpanKind) {
	if !span.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", rec.Method),
		attribute.String("url.path", rec.Path),
		attribute.String("server.address", rec.Authority),
		attribute.Int("http.response.status_code", rec.Code),
		attribute.String("network.protocol.name", "http"),
		attribute.String("skein.reporter", rec.Reporter),
		attribute.String("skein.connection_security_policy", rec.Security),
		attribute.String("skein.response_flags", rec.FlagString()),
		attribute.String("skein.request_id", rec.RequestID),
		attribute.Int64("http.request.body.size", rec.ReqBytes),
		attribute.Int64("http.response.body.size", rec.RespBytes),
	}
	if rec.Protocol == "grpc" {
		svc, method, _ := strings.Cut(strings.TrimPrefix(rec.Path, "/"), "/")
		attrs = append(attrs,
			attribute.String("rpc.system", "grpc"),
			attribute.String("rpc.service", svc),
			attribute.String("rpc.method", method))
		if n, err := strconv.Atoi(rec.GRPCStatus); err == nil {
			attrs = append(attrs, attribute.Int("rpc.grpc.status_code", n))
		}
	}
	if w := rec.Source; w != nil {
		attrs = append(attrs,
			attribute.String("skein.source.workload", w.Name),
			attribute.String("skein.source.namespace", w.Namespace),
			attribute.String("skein.source.principal", w.Identity))
	}
	if w := rec.Dest; w != nil {
		attrs = append(attrs,
			attribute.String("skein.destination.workload", w.Name),
			attribute.String("skein.destination.namespace", w.Namespace),
			attribute.String("skein.destination.pod", w.Pod),
			attribute.String("skein.destination.principal", w.Identity))
	}
	if rec.Service != nil {
		attrs = append(attrs, attribute.String("skein.destination.service", rec.Service.Host))
	} else if rec.PeerService != "" {
		attrs = append(attrs, attribute.String("skein.destination.service", rec.PeerService))
	}
	if rec.Upstream.IsValid() {
		attrs = append(attrs, attribute.String("skein.upstream", rec.Upstream.String()))
	}
	if rec.Route != nil {
		attrs = append(attrs, attribute.String("skein.route", rec.Route.String()))
	}
	span.SetAttributes(attrs...)
	// OpenTelemetry's HTTP conventions: a 5xx is an error for both kinds,
	// a 4xx only for the client side.
	if rec.Code >= 500 || kind == trace.SpanKindClient && rec.Code >= 400 || len(rec.Flags) > 0 {
		span.SetStatus(codes.Error, fmt.Sprintf("%d %s", rec.Code, rec.FlagString()))
	}
	span.End()
}

// newRequestID returns a random UUID (version 4).
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
