package accesslog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Sink receives entries, in batches, on a goroutine of its own: it may be
// slow or block, its queue absorbs that and then drops.
type Sink interface {
	// Write takes a batch of entries; the entries are shared with the
	// other sinks and must not be modified.
	Write(batch []*Entry) error
	// Flush is called when the queue has run empty, and periodically.
	Flush() error
	// Close releases the sink after its last Write.
	Close() error
}

// Sink names, the values of the metric label sink.
const (
	SinkStore = "store"
	SinkOTLP  = "otlp"
)

// Config configures the access log.
type Config struct {
	// Filter chooses the records logged.
	Filter FilterConfig
	// Store is the node-local store; Store.Dir empty: none.
	Store StoreConfig
	// OTLP exports the entries as OTLP logs; OTLP.Endpoint empty (and no
	// Exporter): no export.
	OTLP OTLPConfig
	// QueueSize bounds the entries waiting for each sink; beyond it
	// entries are dropped and counted. Zero: 8192.
	QueueSize int
	// BatchSize is the most entries a sink takes at once. Zero: 256.
	BatchSize int
	// FlushInterval is how often idle sinks are flushed. Zero: 1s.
	FlushInterval time.Duration
}

// Logger is the access log: a filter and one bounded queue per sink.
type Logger struct {
	filter *Filter
	store  *Store
	queues []*queue
	log    *zap.Logger

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// queue feeds one sink.
type queue struct {
	name    string
	sink    Sink
	ch      chan *Entry
	dropped atomic.Uint64
	written atomic.Uint64
	stop    chan struct{}
	done    chan struct{}
}

// New opens the configured sinks and starts their goroutines. With no
// sink configured it returns a Logger that keeps nothing (Enabled false).
func New(ctx context.Context, cfg Config, log *zap.Logger) (*Logger, error) {
	var sinks []namedSink
	var store *Store
	closeAll := func() {
		for _, s := range sinks {
			_ = s.sink.Close()
		}
	}
	if _, err := NewFilter(cfg.Filter); err != nil {
		return nil, err
	}
	if cfg.Store.Dir != "" {
		var err error
		if store, err = OpenStore(cfg.Store, log); err != nil {
			return nil, err
		}
		sinks = append(sinks, namedSink{SinkStore, store})
	}
	if cfg.OTLP.Endpoint != "" || cfg.OTLP.Exporter != nil {
		o, err := NewOTLPSink(ctx, cfg.OTLP)
		if err != nil {
			closeAll()
			return nil, err
		}
		sinks = append(sinks, namedSink{SinkOTLP, o})
	}
	l, err := newLogger(cfg, log, sinks...)
	if err != nil {
		closeAll()
		return nil, err
	}
	l.store = store
	return l, nil
}

type namedSink struct {
	name string
	sink Sink
}

func newLogger(cfg Config, log *zap.Logger, sinks ...namedSink) (*Logger, error) {
	f, err := NewFilter(cfg.Filter)
	if err != nil {
		return nil, err
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 8192
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 256
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = time.Second
	}
	if cfg.QueueSize < 0 || cfg.BatchSize < 0 || cfg.FlushInterval < 0 {
		return nil, errors.New("access log: queue size, batch size and flush interval must not be negative")
	}
	l := &Logger{filter: f, log: log.Named("accesslog")}
	for _, s := range sinks {
		q := &queue{name: s.name, sink: s.sink, ch: make(chan *Entry, cfg.QueueSize),
			stop: make(chan struct{}), done: make(chan struct{})}
		l.queues = append(l.queues, q)
		go q.run(cfg.BatchSize, cfg.FlushInterval, l.log)
	}
	return l, nil
}

// Enabled says whether any sink is configured; when not, the caller need
// not build entries at all.
func (l *Logger) Enabled() bool { return l != nil && len(l.queues) > 0 }

// Keep asks the filter whether a record is logged (see [Filter.Keep]).
func (l *Logger) Keep(code int, flagged, sampled bool, key string) bool {
	return l.Enabled() && l.filter.Keep(code, flagged, sampled, key)
}

// Redact applies the path redaction (see [Filter.Redact]).
func (l *Logger) Redact(path, route string) string { return l.filter.Redact(path, route) }

// Record hands an entry to every sink. It never blocks: when a sink's
// queue is full, or the logger is closed, the entry is dropped for that
// sink and counted. The entry must not be modified afterwards.
func (l *Logger) Record(e *Entry) {
	closed := l.closed.Load()
	for _, q := range l.queues {
		if closed {
			q.dropped.Add(1)
			continue
		}
		select {
		case q.ch <- e:
		default:
			q.dropped.Add(1)
		}
	}
}

// Dropped returns the entries dropped so far, by sink name.
func (l *Logger) Dropped() map[string]uint64 {
	out := make(map[string]uint64, len(l.queues))
	for _, q := range l.queues {
		out[q.name] = q.dropped.Load()
	}
	return out
}

// Written returns the entries handed to each sink successfully so far.
func (l *Logger) Written() map[string]uint64 {
	out := make(map[string]uint64, len(l.queues))
	for _, q := range l.queues {
		out[q.name] = q.written.Load()
	}
	return out
}

// Sinks returns the names of the configured sinks.
func (l *Logger) Sinks() []string {
	var out []string
	for _, q := range l.queues {
		out = append(out, q.name)
	}
	return out
}

// ErrNoStore is what Query returns when no store is configured.
var ErrNoStore = errors.New("no access log store is configured")

// Query queries the store.
func (l *Logger) Query(q Query) (Result, error) {
	if l == nil || l.store == nil {
		return Result{}, ErrNoStore
	}
	return l.store.Query(q)
}

// Store returns the store, nil if none is configured.
func (l *Logger) Store() *Store {
	if l == nil {
		return nil
	}
	return l.store
}

// Close stops taking entries, lets every sink write what is queued until
// ctx ends, and closes the sinks. It is idempotent.
func (l *Logger) Close(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		var errs []error
		for _, q := range l.queues {
			close(q.stop)
		}
		for _, q := range l.queues {
			select {
			case <-q.done:
				errs = append(errs, q.sink.Close())
			case <-ctx.Done():
				errs = append(errs, fmt.Errorf("access log sink %s: %d entries left: %w", q.name, len(q.ch), ctx.Err()))
			}
		}
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// run feeds the sink until stop, then writes what is left.
func (q *queue) run(batchSize int, interval time.Duration, log *zap.Logger) {
	defer close(q.done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	batch := make([]*Entry, 0, batchSize)
	var lastErr time.Time
	write := func() {
		if len(batch) == 0 {
			return
		}
		if err := q.safeWrite(batch); err != nil {
			q.dropped.Add(uint64(len(batch)))
			if time.Since(lastErr) > 10*time.Second {
				lastErr = time.Now()
				log.Warn("access log sink failed; dropped entries", zap.String("sink", q.name), zap.Int("entries", len(batch)), zap.Error(err))
			}
		} else {
			q.written.Add(uint64(len(batch)))
		}
		clear(batch)
		batch = batch[:0]
	}
	flush := func() {
		if err := q.sink.Flush(); err != nil && time.Since(lastErr) > 10*time.Second {
			lastErr = time.Now()
			log.Warn("flush access log sink", zap.String("sink", q.name), zap.Error(err))
		}
	}
	for {
		select {
		case e := <-q.ch:
			batch = append(batch, e)
			for len(batch) < batchSize && len(q.ch) > 0 {
				batch = append(batch, <-q.ch)
			}
			write()
			if len(q.ch) == 0 {
				flush()
			}
		case <-tick.C:
			flush()
		case <-q.stop:
			for len(q.ch) > 0 {
				for len(batch) < batchSize && len(q.ch) > 0 {
					batch = append(batch, <-q.ch)
				}
				write()
			}
			flush()
			return
		}
	}
}

// safeWrite turns a sink's panic into an error: a bad sink loses entries,
// never the agent.
func (q *queue) safeWrite(batch []*Entry) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("sink panicked: %v", r)
		}
	}()
	return q.sink.Write(slices.Clip(batch))
}
