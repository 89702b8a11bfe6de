package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Signer issues workload certificates. The agent's implementation talks to
// cmd/skein-ca; SPIRE or cert-manager could implement it too.
type Signer interface {
	// Sign returns the certificate chain, leaf first, for a CSR (DER)
	// whose only URI SAN is id.
	Sign(ctx context.Context, csrDER []byte, id ID) ([]*x509.Certificate, error)
	// Bundle returns the trust anchors: every root currently trusted,
	// which during a rotation is the old and the new one.
	Bundle(ctx context.Context) ([]*x509.Certificate, error)
}

// ErrNoCertificate is returned for an identity the manager holds no valid
// certificate for (yet).
var ErrNoCertificate = errors.New("no certificate for identity")

// ManagerConfig configures a Manager.
type ManagerConfig struct {
	// Signer issues the certificates. Required.
	Signer Signer
	// RenewFraction of a certificate's lifetime after which it is renewed.
	// Zero: 0.5 (half-life).
	RenewFraction float64
	// BundleRefresh is how often the trust bundle is fetched. Zero: 30s.
	BundleRefresh time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Manager keeps a certificate for each workload identity of the node.
// Private keys never leave its memory.
type Manager struct {
	cfg ManagerConfig
	log *zap.Logger

	mu     sync.RWMutex
	wanted map[ID]bool
	certs  map[ID]*svid
	// pending holds when to retry identities whose first request failed.
	pending map[ID]time.Time
	changed chan struct{} // closed and replaced when a certificate is issued

	roots     atomic.Pointer[x509.CertPool]
	rootCerts atomic.Pointer[[]*x509.Certificate]
	kick      chan struct{}

	issued, failed atomic.Int64
}

type svid struct {
	cert    *tls.Certificate
	leaf    *x509.Certificate
	renewAt time.Time
	// failures and retryAt back off a failing renewal.
	failures int
	retryAt  time.Time
}

// NewManager validates cfg.
func NewManager(cfg ManagerConfig, log *zap.Logger) (*Manager, error) {
	if cfg.Signer == nil {
		return nil, errors.New("certificate manager: a Signer is required")
	}
	if cfg.RenewFraction == 0 {
		cfg.RenewFraction = 0.5
	}
	if cfg.RenewFraction <= 0 || cfg.RenewFraction >= 1 {
		return nil, fmt.Errorf("certificate manager: RenewFraction %v must be between 0 and 1", cfg.RenewFraction)
	}
	if cfg.BundleRefresh == 0 {
		cfg.BundleRefresh = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Manager{
		cfg:     cfg,
		log:     log.Named("certs"),
		wanted:  map[ID]bool{},
		certs:   map[ID]*svid{},
		pending: map[ID]time.Time{},
		changed: make(chan struct{}),
		kick:    make(chan struct{}, 1),
	}
	m.roots.Store(x509.NewCertPool())
	return m, nil
}

// SetIdentities says which identities the node's workloads have. New ones
// get a certificate soon; certificates of identities no longer wanted are
// dropped.
func (m *Manager) SetIdentities(ids []ID) {
	m.mu.Lock()
	want := make(map[ID]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	for id := range m.certs {
		if !want[id] {
			delete(m.certs, id)
		}
	}
	for id := range m.pending {
		if !want[id] {
			delete(m.pending, id)
		}
	}
	m.wanted = want
	m.mu.Unlock()
	m.poke()
}

func (m *Manager) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Certificate returns the current certificate of id.
func (m *Manager) Certificate(id ID) (*tls.Certificate, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s := m.certs[id]
	if s == nil || !m.cfg.Now().Before(s.leaf.NotAfter) {
		return nil, fmt.Errorf("%w %s", ErrNoCertificate, id)
	}
	return s.cert, nil
}

// WaitCertificate is Certificate, waiting until ctx ends for a certificate
// being issued (a workload that just started).
func (m *Manager) WaitCertificate(ctx context.Context, id ID) (*tls.Certificate, error) {
	for {
		m.mu.RLock()
		changed := m.changed
		wanted := m.wanted[id]
		m.mu.RUnlock()
		c, err := m.Certificate(id)
		if err == nil || !wanted {
			return c, err
		}
		m.poke()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w %s: %w", ErrNoCertificate, id, ctx.Err())
		}
	}
}

// Roots returns the trust bundle as a pool.
func (m *Manager) Roots() *x509.CertPool { return m.roots.Load() }

// Run issues and renews certificates and refreshes the trust bundle until
// ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	m.refreshBundle(ctx)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	lastBundle := m.cfg.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.kick:
		case <-tick.C:
		}
		if m.cfg.Now().Sub(lastBundle) >= m.cfg.BundleRefresh {
			m.refreshBundle(ctx)
			lastBundle = m.cfg.Now()
		}
		for _, id := range m.due() {
			if ctx.Err() != nil {
				return nil
			}
			m.issue(ctx, id)
		}
	}
}

// due lists the identities that need a certificate now.
func (m *Manager) due() []ID {
	now := m.cfg.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []ID
	for id := range m.wanted {
		s := m.certs[id]
		if s == nil || !now.Before(s.renewAt) {
			if s != nil && now.Before(s.retryAt) {
				continue
			}
			if s == nil && m.pending[id].After(now) {
				continue
			}
			out = append(out, id)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

func (m *Manager) issue(ctx context.Context, id ID) {
	cert, leaf, err := m.request(ctx, id)
	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.wanted[id] {
		return // the workload left meanwhile
	}
	if err != nil {
		m.failed.Add(1)
		s := m.certs[id]
		n := 1
		if s != nil {
			s.failures++
			n = s.failures
		} else if _, again := m.pending[id]; again {
			n = 2
		}
		backoff := min(time.Duration(1<<min(n-1, 5))*time.Second, 30*time.Second)
		if s != nil {
			s.retryAt = now.Add(backoff)
		} else {
			m.pending[id] = now.Add(backoff)
		}
		m.log.Warn("certificate request failed; retrying", zap.Stringer("identity", id), zap.Duration("backoff", backoff), zap.Error(err))
		return
	}
	delete(m.pending, id)
	// Half-life from now, not from NotBefore: CAs backdate NotBefore for
	// clock skew, which would make a short-lived certificate due at once.
	start := now
	if leaf.NotBefore.After(start) {
		start = leaf.NotBefore
	}
	life := leaf.NotAfter.Sub(start)
	m.certs[id] = &svid{
		cert:    cert,
		leaf:    leaf,
		renewAt: start.Add(time.Duration(float64(life) * m.cfg.RenewFraction)),
	}
	m.issued.Add(1)
	close(m.changed)
	m.changed = make(chan struct{})
	m.log.Info("certificate issued", zap.Stringer("identity", id), zap.Time("not_after", leaf.NotAfter), zap.String("serial", leaf.SerialNumber.Text(16)))
}

// request makes a key and a CSR and asks the signer.
func (m *Manager) request(ctx context.Context, id ID) (*tls.Certificate, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{Organization: []string{id.TrustDomain}},
		URIs:    []*url.URL{id.URL()},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CSR: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	chain, err := m.cfg.Signer.Sign(sctx, csr, id)
	if err != nil {
		return nil, nil, err
	}
	if len(chain) == 0 {
		return nil, nil, errors.New("signer returned no certificate")
	}
	leaf := chain[0]
	got, err := FromCert(leaf)
	if err != nil || got != id {
		return nil, nil, fmt.Errorf("signer returned a certificate for %v, asked for %s", got, id)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, nil, errors.New("signer returned a certificate for another key")
	}
	tc := &tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc, leaf, nil
}

func (m *Manager) refreshBundle(ctx context.Context) {
	bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	roots, err := m.cfg.Signer.Bundle(bctx)
	if err != nil {
		m.log.Warn("fetch trust bundle; keeping the last one", zap.Error(err))
		return
	}
	if len(roots) == 0 {
		m.log.Warn("the signer returned an empty trust bundle; keeping the last one")
		return
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	m.roots.Store(pool)
	m.rootCerts.Store(&roots)
}

// Bundle returns the trust anchors in use.
func (m *Manager) Bundle() []*x509.Certificate {
	if p := m.rootCerts.Load(); p != nil {
		return *p
	}
	return nil
}

// CertStatus describes one workload certificate.
type CertStatus struct {
	Identity  string    `json:"identity"`
	Serial    string    `json:"serial"`
	Issuer    string    `json:"issuer"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	RenewAt   time.Time `json:"renewAt"`
}

// Status lists the certificates held, sorted by identity, and the wanted
// identities that have none yet (with a zero NotAfter).
func (m *Manager) Status() []CertStatus {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []CertStatus
	for id := range m.wanted {
		cs := CertStatus{Identity: id.String()}
		if s := m.certs[id]; s != nil {
			cs.Serial = s.leaf.SerialNumber.Text(16)
			cs.Issuer = s.leaf.Issuer.String()
			cs.NotBefore, cs.NotAfter, cs.RenewAt = s.leaf.NotBefore, s.leaf.NotAfter, s.renewAt
		}
		out = append(out, cs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Identity < out[j].Identity })
	return out
}

// Counters returns how many certificates were issued and how many requests
// failed.
func (m *Manager) Counters() (issued, failed int64) { return m.issued.Load(), m.failed.Load() }
