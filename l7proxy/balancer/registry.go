package balancer

import (
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// Registry keeps one Balancer per service port, under a key the proxy
// chooses (e.g. "namespace/name:port"), so that endpoint state survives
// the proxy's table swaps. State is per service port: a pod that backs two
// Services has two independent states, which is what outlier detection
// wants anyway (one port of a pod can fail while another works).
//
// Get is safe to call on every request: when neither the configuration
// nor the endpoints changed it takes no lock and does not allocate.
type Registry struct {
	now func() time.Time
	// m is an immutable map, copied on write: lookups, on every request,
	// are plain map reads; writes (a new or a gone service) are rare.
	m  atomic.Pointer[map[string]*Balancer]
	mu sync.Mutex // serializes writers
}

// NewRegistry returns an empty registry whose balancers use the clock now
// (nil: time.Now).
func NewRegistry(now func() time.Time) *Registry {
	r := &Registry{now: now}
	r.m.Store(&map[string]*Balancer{})
	return r
}

// Get returns the balancer of key, configured by cfg and holding
// endpoints, creating it if needed. A changed cfg is applied in place
// (Reconfigure), keeping every endpoint's state. If cfg is invalid, Get
// returns the error, together with key's existing balancer if there is one:
// its endpoints are updated and it keeps its last good configuration.
func (r *Registry) Get(key string, cfg Config, endpoints []Addr) (*Balancer, error) {
	if b, ok := (*r.m.Load())[key]; ok {
		return update(key, b, cfg, endpoints)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.m.Load()
	if b, ok := old[key]; ok {
		return update(key, b, cfg, endpoints)
	}
	b, err := New(cfg, r.now)
	if err != nil {
		return nil, fmt.Errorf("configure balancer %q: %w", key, err)
	}
	b.Update(endpoints)
	next := maps.Clone(old)
	next[key] = b
	r.m.Store(&next)
	return b, nil
}

func update(key string, b *Balancer, cfg Config, endpoints []Addr) (*Balancer, error) {
	b.Update(endpoints)
	if err := b.Reconfigure(cfg); err != nil {
		return b, fmt.Errorf("configure balancer %q: %w", key, err)
	}
	return b, nil
}

// Retain drops the balancers whose key is not in keys: the service ports
// that are gone. Requests in flight on a dropped balancer finish normally.
func (r *Registry) Retain(keys map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := maps.Clone(*r.m.Load())
	maps.DeleteFunc(next, func(k string, _ *Balancer) bool { return !keys[k] })
	r.m.Store(&next)
}

// Snapshot returns the endpoint status of every balancer, by key.
func (r *Registry) Snapshot() map[string][]EndpointStatus {
	m := *r.m.Load()
	out := make(map[string][]EndpointStatus, len(m))
	for k, b := range m {
		out[k] = b.Endpoints()
	}
	return out
}
