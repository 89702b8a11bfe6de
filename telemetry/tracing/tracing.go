package tracing

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// Config configures tracing.
type Config struct {
	// Endpoint is the OTLP collector, host:port. Empty: no spans are
	// recorded, but trace context still flows through the proxy.
	Endpoint string
	// Protocol is "grpc" (default, port 4317) or "http" (port 4318).
	Protocol string
	// SampleRate is the share of new traces recorded, 0 to 1. A request
	// that arrives with a trace keeps its parent's decision. Default 0.01.
	SampleRate float64
	// Node names the node in the spans' resource.
	Node string
	// QueueSize bounds the spans waiting for export; beyond it spans are
	// dropped and counted. Zero: 4096.
	QueueSize int
	// BatchSize is the most spans sent in one export. Zero: 512.
	BatchSize int
	// Interval is the longest a span waits for its batch. Zero: 1s.
	Interval time.Duration
	// Exporter overrides the OTLP exporter (tests).
	Exporter sdktrace.SpanExporter
}

// Tracing is the running setup.
type Tracing struct {
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator

	provider *sdktrace.TracerProvider
	queue    *queue
}

// Propagator returns the propagator Skein uses: B3 (single or multi
// header) and W3C trace context in; both out (B3 as multi headers).
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(
		b3.New(b3.WithInjectEncoding(b3.B3MultipleHeader)),
		propagation.TraceContext{},
		propagation.Baggage{},
	)
}

// New starts tracing. With no endpoint and no exporter it returns a setup
// that propagates but records nothing.
func New(ctx context.Context, cfg Config, log *zap.Logger) (*Tracing, error) {
	t := &Tracing{Propagator: Propagator()}
	if cfg.Endpoint == "" && cfg.Exporter == nil {
		return t, nil
	}
	if cfg.SampleRate < 0 || cfg.SampleRate > 1 {
		return nil, fmt.Errorf("tracing: sample rate %v is not between 0 and 1", cfg.SampleRate)
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 4096
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 512
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	exp := cfg.Exporter
	if exp == nil {
		var err error
		switch cfg.Protocol {
		case "", "grpc":
			exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(cfg.Endpoint), otlptracegrpc.WithInsecure())
		case "http":
			exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(cfg.Endpoint), otlptracehttp.WithInsecure())
		default:
			return nil, fmt.Errorf("tracing: protocol %q: want grpc or http", cfg.Protocol)
		}
		if err != nil {
			return nil, fmt.Errorf("tracing: create OTLP exporter: %w", err)
		}
	}
	res := sdkresource.NewWithAttributes("",
		attribute.String("service.name", "skein-proxy"),
		attribute.String("host.name", cfg.Node),
		attribute.String("k8s.node.name", cfg.Node),
	)
	t.queue = newQueue(exp, cfg.QueueSize, cfg.BatchSize, cfg.Interval, log.Named("tracing"))
	t.provider = sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRate))),
		sdktrace.WithSpanProcessor(t.queue),
	)
	t.Tracer = t.provider.Tracer("github.com/skeinmesh/skein/l7proxy")
	return t, nil
}

// Dropped counts spans dropped because the export queue was full.
func (t *Tracing) Dropped() uint64 {
	if t.queue == nil {
		return 0
	}
	return t.queue.dropped.Load()
}

// Exported counts spans handed to the exporter successfully.
func (t *Tracing) Exported() uint64 {
	if t.queue == nil {
		return 0
	}
	return t.queue.exported.Load()
}

// Shutdown flushes what is queued, bounded by ctx.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.provider == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

// queue is a span processor with a bounded queue: OnEnd never blocks; a
// full queue drops the span and counts it.
type queue struct {
	exp      sdktrace.SpanExporter
	ch       chan sdktrace.ReadOnlySpan
	batch    int
	interval time.Duration
	log      *zap.Logger

	dropped, exported, failed atomic.Uint64
	stop                      chan struct{}
	done                      chan struct{}
	once                      sync.Once
}

var _ sdktrace.SpanProcessor = (*queue)(nil)

func newQueue(exp sdktrace.SpanExporter, size, batch int, interval time.Duration, log *zap.Logger) *queue {
	q := &queue{exp: exp, ch: make(chan sdktrace.ReadOnlySpan, size), batch: batch, interval: interval, log: log,
		stop: make(chan struct{}), done: make(chan struct{})}
	go q.run()
	return q
}

func (q *queue) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (q *queue) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	select {
	case q.ch <- s:
	default:
		q.dropped.Add(1)
	}
}

func (q *queue) run() {
	defer close(q.done)
	t := time.NewTicker(q.interval)
	defer t.Stop()
	buf := make([]sdktrace.ReadOnlySpan, 0, q.batch)
	flush := func() {
		if len(buf) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := q.exp.ExportSpans(ctx, buf)
		cancel()
		if err != nil {
			q.failed.Add(uint64(len(buf)))
			q.dropped.Add(uint64(len(buf)))
			q.log.Warn("export spans failed; dropped them", zap.Int("spans", len(buf)), zap.Error(err))
		} else {
			q.exported.Add(uint64(len(buf)))
		}
		buf = buf[:0]
	}
	for {
		select {
		case s := <-q.ch:
			buf = append(buf, s)
			if len(buf) >= q.batch {
				flush()
			}
		case <-t.C:
			flush()
		case <-q.stop:
			for {
				select {
				case s := <-q.ch:
					buf = append(buf, s)
					if len(buf) >= q.batch {
						flush()
					}
				default:
					flush()
					return
				}
			}
		}
	}
}

func (q *queue) Shutdown(ctx context.Context) error {
	q.once.Do(func() { close(q.stop) })
	select {
	case <-q.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return errors.Join(q.exp.Shutdown(ctx))
}

func (q *queue) ForceFlush(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Second)
	for len(q.ch) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
