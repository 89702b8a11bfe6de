package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/skeinmesh/skein/agent/model"
	"github.com/skeinmesh/skein/agent/source"
)

// ErrRunning is returned by a second call of Run.
var ErrRunning = errors.New("kube source: Run was already called")

// Source reads the cluster's objects from the API server with informers
// and delivers them as complete sets, like the file source.
type Source struct {
	cfg     Config
	log     *zap.Logger
	clients *Clients

	kinds    []*watched
	kick     chan struct{}
	synced   atomic.Bool
	syncedCh chan struct{}
	ran      atomic.Bool
	// deliveries counts updates handed out, for tests and status.
	deliveries atomic.Int64
}

// watched is the state of one kind. Only Run's goroutine touches it.
type watched struct {
	kind
	informer cache.SharedIndexInformer // nil while not watched
	cancel   context.CancelFunc
	done     chan struct{}
	// missing is set once an optional kind was found not served and
	// logged, so it is logged once, not at every check.
	missing bool
}

// New validates cfg, builds the clients and returns a source; Run starts it.
func New(cfg Config, log *zap.Logger) (*Source, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("kube source config: %w", err)
	}
	clients, err := cfg.clients()
	if err != nil {
		return nil, err
	}
	s := &Source{
		cfg:      cfg,
		log:      log.Named("kube"),
		clients:  clients,
		kick:     make(chan struct{}, 1),
		syncedCh: make(chan struct{}),
	}
	for _, k := range kinds() {
		s.kinds = append(s.kinds, &watched{kind: k})
	}
	return s, nil
}

// HasSynced reports whether every watched resource has been listed once,
// so that the complete set is being (or has been) delivered.
func (s *Source) HasSynced() bool { return s.synced.Load() }

// WaitForSync blocks until HasSynced or ctx ends.
func (s *Source) WaitForSync(ctx context.Context) error {
	select {
	case <-s.syncedCh:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the initial list from the API server: %w", ctx.Err())
	}
}

// Deliveries returns how many updates Run has delivered.
func (s *Source) Deliveries() int64 { return s.deliveries.Load() }

// Run watches the API server until ctx ends. It delivers the complete
// object set once every watched resource has been listed, then again after
// every change (debounced). It returns nil when ctx ends; the informers
// stop before it returns.
func (s *Source) Run(ctx context.Context, update func(source.Update)) error {
	if !s.ran.CompareAndSwap(false, true) {
		return ErrRunning
	}
	// client-go logs through the context's logger: route it to ours.
	ctx = klog.NewContext(ctx, zapr.NewLogger(s.log.Named("client-go")))
	defer s.stopAll()

	served, err := s.discoverUntil(ctx)
	if err != nil {
		return nil // ctx ended
	}
	for _, w := range s.kinds {
		if !w.optional || served[w.name] {
			if err := s.start(ctx, w); err != nil {
				return err
			}
		}
	}
	if !s.waitInformers(ctx) {
		return nil
	}
	s.drainKick()
	s.synced.Store(true)
	close(s.syncedCh)
	s.deliver(update)
	s.log.Info("initial sync done", zap.Any("objects", s.counts()))

	check := time.NewTicker(s.cfg.DiscoveryInterval)
	defer check.Stop()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var first time.Time // first event of the pending delivery; zero: none pending
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			// Wait for quiet, but never beyond MaxDelay after the first
			// event, so a steady trickle cannot starve deliveries.
			wait := min(s.cfg.Debounce, first.Add(s.cfg.MaxDelay).Sub(now))
			timer.Reset(max(wait, 0))
		case <-timer.C:
			first = time.Time{}
			s.deliver(update)
		case <-check.C:
			served, err := s.discover(ctx)
			if err != nil {
				s.log.Debug("check optional APIs", zap.Error(err))
				continue
			}
			if s.reconcileOptional(ctx, served) {
				s.trigger()
			}
		}
	}
}

// discover asks the API server which optional kinds it serves.
func (s *Source) discover(ctx context.Context) (map[string]bool, error) {
	served := map[string]bool{}
	byGV := map[string][]*watched{}
	for _, w := range s.kinds {
		if w.optional {
			gv := w.gvr.GroupVersion().String()
			byGV[gv] = append(byGV[gv], w)
		}
	}
	disco := s.clients.Kube.Discovery()
	for gv, ws := range byGV {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		list, err := disco.ServerResourcesForGroupVersion(gv)
		if apierrors.IsNotFound(err) {
			continue // the group is not served at all
		}
		if err != nil {
			return nil, fmt.Errorf("discover %s: %w", gv, err)
		}
		for _, r := range list.APIResources {
			for _, w := range ws {
				if r.Name == w.gvr.Resource {
					served[w.name] = true
				}
			}
		}
	}
	return served, nil
}

// discoverUntil retries discovery with backoff until it succeeds or ctx
// ends: until the API server answers, no informer could sync either.
func (s *Source) discoverUntil(ctx context.Context) (map[string]bool, error) {
	backoff := 200 * time.Millisecond
	for {
		served, err := s.discover(ctx)
		if err == nil {
			for _, w := range s.kinds {
				if w.optional && !served[w.name] {
					s.logMissing(w)
				}
			}
			return served, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		s.log.Warn("API server discovery failed; retrying", zap.Error(err), zap.Duration("in", backoff))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (s *Source) logMissing(w *watched) {
	if w.missing {
		return
	}
	w.missing = true
	s.log.Warn("API not served; carrying on without it",
		zap.String("kind", w.name), zap.String("resource", w.gvr.String()), zap.String("effect", w.why),
		zap.Duration("recheck_every", s.cfg.DiscoveryInterval))
}

// reconcileOptional starts the informers of optional kinds that appeared
// and stops those of kinds that went. It reports whether a kind went, so
// the set without it is delivered (a kind that appears delivers through its
// informer's add events).
func (s *Source) reconcileOptional(ctx context.Context, served map[string]bool) bool {
	gone := false
	for _, w := range s.kinds {
		switch {
		case !w.optional:
		case served[w.name] && w.informer == nil:
			s.log.Info("API now served; watching it", zap.String("kind", w.name), zap.String("resource", w.gvr.String()))
			w.missing = false
			if err := s.start(ctx, w); err != nil {
				s.log.Error("watch optional API", zap.String("kind", w.name), zap.Error(err))
			}
		case !served[w.name] && w.informer != nil:
			s.stop(w)
			s.logMissing(w)
			gone = true
		}
	}
	return gone
}

// start creates and runs the informer of a kind.
func (s *Source) start(ctx context.Context, w *watched) error {
	inf := w.newInformer(s.clients, s.cfg.Resync)
	if err := inf.SetTransform(w.transform); err != nil {
		return fmt.Errorf("watch %s: %w", w.name, err)
	}
	log := s.log.With(zap.String("kind", w.name))
	if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		switch {
		case errors.Is(err, io.EOF), apierrors.IsResourceExpired(err), apierrors.IsGone(err):
			log.Debug("watch closed; re-watching", zap.Error(err))
		default:
			log.Warn("watch failed; relisting with backoff", zap.Error(err))
		}
	}); err != nil {
		return fmt.Errorf("watch %s: %w", w.name, err)
	}
	filterResync := s.cfg.Resync == 0
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { s.trigger() },
		UpdateFunc: func(oldObj, newObj any) {
			// A relist replays every object; only real changes matter.
			if filterResync && sameVersion(oldObj, newObj) {
				return
			}
			s.trigger()
		},
		DeleteFunc: func(any) { s.trigger() },
	}); err != nil {
		return fmt.Errorf("watch %s: %w", w.name, err)
	}
	ictx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				log.Error("informer panicked", zap.Any("panic", r), zap.Stack("stack"))
			}
		}()
		inf.RunWithContext(ictx)
	}()
	w.informer, w.cancel, w.done = inf, cancel, done
	return nil
}

// stop ends a kind's informer and waits (bounded) for it to return.
func (s *Source) stop(w *watched) {
	if w.informer == nil {
		return
	}
	w.cancel()
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
		s.log.Warn("informer did not stop in time", zap.String("kind", w.name))
	}
	w.informer, w.cancel, w.done = nil, nil, nil
}

func (s *Source) stopAll() {
	for _, w := range s.kinds {
		if w.informer != nil {
			w.cancel()
		}
	}
	var wg sync.WaitGroup
	for _, w := range s.kinds {
		wg.Add(1)
		go func() { defer wg.Done(); s.stop(w) }()
	}
	wg.Wait()
}

func sameVersion(a, b any) bool {
	ma, ok1 := a.(metav1.Object)
	mb, ok2 := b.(metav1.Object)
	return ok1 && ok2 && ma.GetResourceVersion() != "" && ma.GetResourceVersion() == mb.GetResourceVersion()
}

func (s *Source) trigger() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Source) drainKick() {
	select {
	case <-s.kick:
	default:
	}
}

// waitInformers waits until every running informer has listed once,
// logging what it still waits for every 10s. It returns false if ctx ended.
func (s *Source) waitInformers(ctx context.Context) bool {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	lastLog := start
	for {
		var waiting []string
		for _, w := range s.kinds {
			if w.informer != nil && !w.informer.HasSynced() {
				waiting = append(waiting, w.name)
			}
		}
		if len(waiting) == 0 {
			return true
		}
		if time.Since(lastLog) >= 10*time.Second {
			lastLog = time.Now()
			s.log.Warn("still waiting for the initial list", zap.Strings("kinds", waiting), zap.Duration("since", time.Since(start).Round(time.Second)))
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// Snapshot builds an update from the informers' caches now: every object
// of every watched kind, sorted by kind (in the source's order), namespace
// and name.
func (s *Source) snapshot() source.Update {
	var u source.Update
	for _, w := range s.kinds {
		if w.informer == nil {
			continue
		}
		items := w.informer.GetStore().List()
		objs := make([]model.Object, 0, len(items))
		for _, item := range items {
			switch o := item.(type) {
			case *invalidObject:
				objs = append(objs, o.object())
			case runtime.Object:
				objs = append(objs, model.Object{Obj: o})
			}
		}
		sort.Slice(objs, func(i, j int) bool { return objectKey(objs[i]) < objectKey(objs[j]) })
		u.Objects = append(u.Objects, objs...)
	}
	return u
}

func objectKey(o model.Object) string {
	if o.Obj == nil {
		return o.Ref.Key.String()
	}
	if m, ok := o.Obj.(metav1.Object); ok {
		return model.KeyOf(m).String()
	}
	return ""
}

func (s *Source) deliver(update func(source.Update)) {
	u := s.snapshot()
	s.deliveries.Add(1)
	s.log.Debug("delivering objects", zap.Int("objects", len(u.Objects)))
	update(u)
}

// counts returns the number of cached objects per watched kind.
func (s *Source) counts() map[string]int {
	out := map[string]int{}
	for _, w := range s.kinds {
		if w.informer != nil {
			out[w.name] = len(w.informer.GetStore().ListKeys())
		}
	}
	return out
}
