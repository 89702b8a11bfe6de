package accesslog

import (
	"time"

	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
)

// Entry is one access-log record: a finished HTTP request (or gRPC call)
// or TCP connection, as one proxy hop saw it. Field names follow Envoy's and
// Istio's access logs where they have one, so queries and habits carry over.
// Empty fields are left out of the JSON line.
type Entry struct {
	// Start is when the request or connection began.
	Start time.Time `json:"start_time"`
	// DurationMS is how long it took, in milliseconds (microsecond
	// precision).
	DurationMS float64 `json:"duration_ms"`
	// Protocol is http, http2, grpc or tcp.
	Protocol string `json:"protocol"`
	// Reporter is source (the client's node proxy) or destination (the
	// proxy in front of the server, after the mTLS tunnel).
	Reporter string `json:"reporter"`
	// TraceID and SpanID identify this hop's span, as in the tracing
	// backend; RequestID is the x-request-id.
	TraceID   string `json:"trace_id,omitempty"`
	SpanID    string `json:"span_id,omitempty"`
	RequestID string `json:"request_id,omitempty"`

	SourceWorkload  string `json:"source_workload,omitempty"`
	SourceNamespace string `json:"source_namespace,omitempty"`
	SourcePrincipal string `json:"source_principal,omitempty"`
	SourcePod       string `json:"source_pod,omitempty"`

	DestinationWorkload  string `json:"destination_workload,omitempty"`
	DestinationNamespace string `json:"destination_namespace,omitempty"`
	DestinationPrincipal string `json:"destination_principal,omitempty"`
	DestinationPod       string `json:"destination_pod,omitempty"`
	// DestinationService is the Service's host name.
	DestinationService string `json:"destination_service,omitempty"`

	// Route is the HTTPRoute or GRPCRoute rule that matched ("HTTPRoute
	// shop/api rule 0").
	Route     string `json:"route,omitempty"`
	Method    string `json:"method,omitempty"`
	Authority string `json:"authority,omitempty"`
	// Path is the request path after redaction (see [Redaction]).
	Path string `json:"path,omitempty"`

	// ResponseCode is the HTTP status; 0 for TCP.
	ResponseCode int    `json:"response_code,omitempty"`
	GRPCStatus   string `json:"grpc_status,omitempty"`
	// ResponseFlags are Envoy's flags, "-" for none.
	ResponseFlags string `json:"response_flags"`
	// BytesReceived came from the client (request body, or client to
	// server for TCP); BytesSent went to it.
	BytesReceived int64 `json:"bytes_received"`
	BytesSent     int64 `json:"bytes_sent"`
	// UpstreamHost is the endpoint the proxy sent the request to;
	// OriginalDst is the address the app dialed.
	UpstreamHost string `json:"upstream_host,omitempty"`
	OriginalDst  string `json:"original_dst,omitempty"`
	// Attempts counts upstream attempts when retried (more than one).
	Attempts int `json:"attempts,omitempty"`
	// ConnectionSecurityPolicy is mutual_tls or none.
	ConnectionSecurityPolicy string `json:"connection_security_policy,omitempty"`
	// Error says why the upstream failed, when it did.
	Error string `json:"error,omitempty"`
}

// Failed says whether the entry is a failure: a 5xx, or a response flag
// (which marks what the proxy saw go wrong, for HTTP and TCP alike).
func (e *Entry) Failed() bool {
	return e.ResponseCode >= 500 || e.ResponseFlags != "" && e.ResponseFlags != "-"
}

// Duration returns DurationMS as a time.Duration.
func (e *Entry) Duration() time.Duration {
	return time.Duration(e.DurationMS * float64(time.Millisecond))
}

// DurationMS converts d to milliseconds, rounded to the microsecond.
func DurationMS(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

// MarshalLogObject implements zapcore.ObjectMarshaler: the fields of the
// JSON line after start_time, which the encoder writes as the entry time.
func (e *Entry) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddFloat64("duration_ms", e.DurationMS)
	enc.AddString("protocol", e.Protocol)
	enc.AddString("reporter", e.Reporter)
	str := func(k, v string) {
		if v != "" {
			enc.AddString(k, v)
		}
	}
	str("trace_id", e.TraceID)
	str("span_id", e.SpanID)
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
		enc.AddInt("response_code", e.ResponseCode)
	}
	str("grpc_status", e.GRPCStatus)
	flags := e.ResponseFlags
	if flags == "" {
		flags = "-"
	}
	enc.AddString("response_flags", flags)
	enc.AddInt64("bytes_received", e.BytesReceived)
	enc.AddInt64("bytes_sent", e.BytesSent)
	str("upstream_host", e.UpstreamHost)
	str("original_dst", e.OriginalDst)
	if e.Attempts > 1 {
		enc.AddInt("attempts", e.Attempts)
	}
	str("connection_security_policy", e.ConnectionSecurityPolicy)
	str("error", e.Error)
	return nil
}

// newEncoder returns zap's JSON encoder set up for access-log lines: no
// level, message or caller, the entry time as start_time in RFC 3339 UTC.
func newEncoder() zapcore.Encoder {
	return zapcore.NewJSONEncoder(zapcore.EncoderConfig{
		TimeKey:    "start_time",
		LineEnding: "\n",
		EncodeTime: func(t time.Time, enc zapcore.PrimitiveArrayEncoder) {
			enc.AppendString(t.UTC().Format(time.RFC3339Nano))
		},
		EncodeDuration: zapcore.StringDurationEncoder,
	})
}

// encode appends e as one JSON line to a buffer from zap's pool; the caller
// frees it.
func encode(enc zapcore.Encoder, e *Entry) (*buffer.Buffer, error) {
	f := zapcore.Field{Type: zapcore.InlineMarshalerType, Interface: e}
	return enc.EncodeEntry(zapcore.Entry{Time: e.Start}, []zapcore.Field{f})
}
