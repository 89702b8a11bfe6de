package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/skeinmesh/skein/agent/identity"
)

// Signer signs workload certificates.
type Signer interface {
	// Sign checks the CSR and returns the chain, leaf first, for id.
	Sign(csr *x509.CertificateRequest, id identity.ID, ttl time.Duration) ([]*x509.Certificate, error)
	// Bundle returns every root currently trusted.
	Bundle() []*x509.Certificate
}

var _ Signer = (*LocalCA)(nil)

// ErrBadCSR is returned for a CSR the CA will not sign.
var ErrBadCSR = errors.New("bad certificate request")

// LocalCA signs with root keys kept in a directory (mode 0700, keys 0600).
type LocalCA struct {
	dir         string
	trustDomain string
	now         func() time.Time

	mu     sync.RWMutex
	roots  []*root // trusted, newest first; roots[0] signs
	maxTTL time.Duration
}

type root struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	path string
}

// LocalConfig configures a LocalCA.
type LocalConfig struct {
	// Dir holds the root keys and certificates. Required.
	Dir string
	// TrustDomain the CA signs for. Required.
	TrustDomain string
	// RootTTL is the lifetime of a new root. Zero: 10 years.
	RootTTL time.Duration
	// MaxTTL caps workload certificate lifetimes. Zero: 24h.
	MaxTTL time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// LoadOrCreate opens the CA in cfg.Dir, creating a root if there is none.
func LoadOrCreate(cfg LocalConfig) (*LocalCA, error) {
	var errs []error
	if cfg.Dir == "" {
		errs = append(errs, errors.New("ca config: Dir is required"))
	}
	if cfg.TrustDomain == "" {
		errs = append(errs, errors.New("ca config: TrustDomain is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.RootTTL == 0 {
		cfg.RootTTL = 10 * 365 * 24 * time.Hour
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &LocalCA{dir: cfg.Dir, trustDomain: cfg.TrustDomain, now: cfg.Now, maxTTL: cfg.MaxTTL}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create ca dir: %w", err)
	}
	if err := c.load(); err != nil {
		return nil, err
	}
	if len(c.roots) == 0 {
		if err := c.newRoot(cfg.RootTTL); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Reload re-reads the roots from the directory, so that a rotation or a
// retirement done by another process (skein-ca rotate) takes effect.
func (c *LocalCA) Reload() error {
	fresh := &LocalCA{dir: c.dir, trustDomain: c.trustDomain, now: c.now}
	if err := fresh.load(); err != nil {
		return err
	}
	if len(fresh.roots) == 0 {
		return fmt.Errorf("reload %s: no valid root left; keeping the current ones", c.dir)
	}
	c.mu.Lock()
	c.roots = fresh.roots
	c.mu.Unlock()
	return nil
}

// load reads root-*.pem files: each holds a certificate and its key.
func (c *LocalCA) load() error {
	paths, err := filepath.Glob(filepath.Join(c.dir, "root-*.pem"))
	if err != nil {
		return err
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read root %s: %w", p, err)
		}
		r := &root{path: p}
		for {
			var b *pem.Block
			b, data = pem.Decode(data)
			if b == nil {
				break
			}
			switch b.Type {
			case "CERTIFICATE":
				r.cert, err = x509.ParseCertificate(b.Bytes)
			case "EC PRIVATE KEY":
				r.key, err = x509.ParseECPrivateKey(b.Bytes)
			}
			if err != nil {
				return fmt.Errorf("parse root %s: %w", p, err)
			}
		}
		if r.cert == nil || r.key == nil {
			return fmt.Errorf("root %s: want a CERTIFICATE and an EC PRIVATE KEY block", p)
		}
		if !c.now().Before(r.cert.NotAfter) {
			continue // expired: no longer trusted
		}
		c.roots = append(c.roots, r)
	}
	sort.Slice(c.roots, func(i, j int) bool { return c.roots[i].path > c.roots[j].path }) // newest first
	return nil
}

func (c *LocalCA) newRoot(ttl time.Duration) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate root key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	now := c.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{c.trustDomain}, CommonName: "Skein root CA " + now.UTC().Format("2006-01-02T15:04:05Z")},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(ttl),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		URIs:                  []*url.URL{trustDomainURL(c.trustDomain)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("create root: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	var b strings.Builder
	_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	_ = pem.Encode(&b, &pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	// The name sorts by creation time: NotBefore has only second precision.
	p := filepath.Join(c.dir, fmt.Sprintf("root-%020d-%s.pem", now.UnixNano(), serial.Text(16)))
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write root: %w", err)
	}
	c.mu.Lock()
	c.roots = append([]*root{{cert: cert, key: key, path: p}}, c.roots...)
	c.mu.Unlock()
	return nil
}

// Rotate makes a new root the signer. The previous roots stay in the
// bundle, so certificates they signed keep verifying until Retire.
func (c *LocalCA) Rotate(ttl time.Duration) error {
	if ttl == 0 {
		ttl = 10 * 365 * 24 * time.Hour
	}
	return c.newRoot(ttl)
}

// Retire drops every root but the signing one from the bundle and deletes
// their files. Call it once every workload certificate signed by an old root
// has expired (the maximum TTL after Rotate).
func (c *LocalCA) Retire() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, r := range c.roots[1:] {
		if err := os.Remove(r.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	c.roots = c.roots[:1]
	return errors.Join(errs...)
}

// Bundle implements Signer.
func (c *LocalCA) Bundle() []*x509.Certificate {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*x509.Certificate, len(c.roots))
	for i, r := range c.roots {
		out[i] = r.cert
	}
	return out
}

// Sign implements Signer: the CSR must be self-signed by an ECDSA P-256 key
// and name exactly id as its only URI SAN, with no other names.
func (c *LocalCA) Sign(csr *x509.CertificateRequest, id identity.ID, ttl time.Duration) ([]*x509.Certificate, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %w", ErrBadCSR, err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: the key must be ECDSA P-256", ErrBadCSR)
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != id.String() {
		return nil, fmt.Errorf("%w: the only URI SAN must be %s", ErrBadCSR, id)
	}
	if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses) > 0 {
		return nil, fmt.Errorf("%w: workload certificates carry no DNS, IP or email names", ErrBadCSR)
	}
	if id.TrustDomain != c.trustDomain {
		return nil, fmt.Errorf("%w: trust domain %q is not this CA's (%q)", ErrBadCSR, id.TrustDomain, c.trustDomain)
	}
	if ttl <= 0 || ttl > c.maxTTL {
		ttl = c.maxTTL
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	c.mu.RLock()
	signer := c.roots[0]
	c.mu.RUnlock()
	now := c.now()
	notAfter := now.Add(ttl)
	if notAfter.After(signer.cert.NotAfter) {
		notAfter = signer.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{c.trustDomain}},
		NotBefore:    now.Add(-time.Minute), // clock skew between nodes
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{id.URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer.cert, pub, signer.key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return []*x509.Certificate{leaf}, nil
}

// ServingCertificate issues the CA server's own TLS certificate for the
// given DNS names and IPs.
func (c *LocalCA) ServingCertificate(dnsNames []string, ips []net.IP, ttl time.Duration) (certDER []byte, key *ecdsa.PrivateKey, err error) {
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	c.mu.RLock()
	signer := c.roots[0]
	c.mu.RUnlock()
	now := c.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{c.trustDomain}, CommonName: "skein-ca"},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer.cert, &key.PublicKey, signer.key)
	return der, key, err
}

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	return n, nil
}

// EncodePEM encodes certificates as PEM.
func EncodePEM(certs []*x509.Certificate) []byte {
	var b strings.Builder
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return []byte(b.String())
}

// ParsePEM decodes every CERTIFICATE block.
func ParsePEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no CERTIFICATE block found")
	}
	return out, nil
}

func trustDomainURL(td string) *url.URL { return &url.URL{Scheme: "spiffe", Host: td} }
