// Package tracing sets up the node proxy's tracing: W3C trace context and
// B3 (single and multi header) in and out, a sampler that honours the
// parent's decision and samples new traces at a configured rate, and OTLP
// export (gRPC or HTTP) through a bounded queue that drops, and counts,
// spans rather than ever blocking a request.
package tracing
