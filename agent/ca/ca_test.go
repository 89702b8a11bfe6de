package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skeinmesh/skein/agent/identity"
	"github.com/skeinmesh/skein/agent/model"
)

var (
	client = identity.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "client"}
	remote = identity.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "product"}
)

func csrFor(t *testing.T, key any, uris ...string) *x509.CertificateRequest {
	t.Helper()
	tmpl := &x509.CertificateRequest{}
	for _, u := range uris {
		pu, err := url.Parse(u)
		require.NoError(t, err)
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	require.NoError(t, err)
	csr, err := x509.ParseCertificateRequest(der)
	require.NoError(t, err)
	return csr
}

func newCA(t *testing.T) *LocalCA {
	t.Helper()
	c, err := LoadOrCreate(LocalConfig{Dir: t.TempDir(), TrustDomain: "cluster.local", MaxTTL: time.Hour})
	require.NoError(t, err)
	return c
}

func TestSign(t *testing.T) {
	c := newCA(t)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)

	chain, err := c.Sign(csrFor(t, p256, client.String()), client, 10*time.Minute)
	require.NoError(t, err)
	leaf := chain[0]
	got, err := identity.FromCert(leaf)
	require.NoError(t, err)
	require.Equal(t, client, got)
	require.InDelta(t, 11*time.Minute, leaf.NotAfter.Sub(leaf.NotBefore), float64(time.Second), "asked TTL plus the skew allowance")
	roots := x509.NewCertPool()
	roots.AddCert(c.Bundle()[0])
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)

	chain, err = c.Sign(csrFor(t, p256, client.String()), client, 48*time.Hour)
	require.NoError(t, err)
	require.LessOrEqual(t, chain[0].NotAfter.Sub(time.Now()), time.Hour, "capped at the maximum TTL")

	bad := []struct {
		name string
		csr  *x509.CertificateRequest
		id   identity.ID
	}{
		{"RSA key", csrFor(t, rsaKey, client.String()), client},
		{"P-384 key", csrFor(t, p384, client.String()), client},
		{"other identity in the CSR", csrFor(t, p256, remote.String()), client},
		{"two URI SANs", csrFor(t, p256, client.String(), remote.String()), client},
		{"other trust domain", csrFor(t, p256, "spiffe://evil.org/ns/shop/sa/client"), identity.ID{TrustDomain: "evil.org", Namespace: "shop", ServiceAccount: "client"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Sign(tt.csr, tt.id, 0)
			require.ErrorIs(t, err, ErrBadCSR)
		})
	}
}

func TestRotateAndRetire(t *testing.T) {
	dir := t.TempDir()
	c, err := LoadOrCreate(LocalConfig{Dir: dir, TrustDomain: "cluster.local"})
	require.NoError(t, err)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	old, err := c.Sign(csrFor(t, key, client.String()), client, 0)
	require.NoError(t, err)

	require.NoError(t, c.Rotate(0))
	require.Len(t, c.Bundle(), 2, "old and new root trusted during the overlap")
	fresh, err := c.Sign(csrFor(t, key, client.String()), client, 0)
	require.NoError(t, err)
	newRoot, oldRoot := c.Bundle()[0], c.Bundle()[1]
	require.NoError(t, fresh[0].CheckSignatureFrom(newRoot), "the new root signs")
	require.Error(t, fresh[0].CheckSignatureFrom(oldRoot))
	require.NoError(t, old[0].CheckSignatureFrom(oldRoot))

	pool := x509.NewCertPool()
	for _, r := range c.Bundle() {
		pool.AddCert(r)
	}
	for _, leaf := range []*x509.Certificate{old[0], fresh[0]} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		require.NoError(t, err, "both generations verify against the bundle")
	}

	// Another process (skein-ca retire) drops the old root; Reload sees it.
	other, err := LoadOrCreate(LocalConfig{Dir: dir, TrustDomain: "cluster.local"})
	require.NoError(t, err)
	require.NoError(t, other.Retire())
	require.NoError(t, c.Reload())
	require.Len(t, c.Bundle(), 1)
	pool = x509.NewCertPool()
	pool.AddCert(c.Bundle()[0])
	_, err = old[0].Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	require.Error(t, err, "after retirement the old generation no longer verifies")
}

// testServer runs the CA API over real TLS on loopback.
func testServer(t *testing.T, c *LocalCA, pods *SnapshotLocator) (addr, rootsFile, tokenDir string) {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokens"), []byte("# lab tokens\ntok-a node-a\ntok-b node-b\n"), 0o600))
	authn, err := NewTokenFile(filepath.Join(dir, "tokens"))
	require.NoError(t, err)
	der, key, err := c.ServingCertificate(nil, []net.IP{net.ParseIP("127.0.0.1")}, time.Hour)
	require.NoError(t, err)
	srv, err := NewServer(ServerConfig{Addr: "127.0.0.1:0", Signer: c, Authn: authn, Pods: pods,
		TLS: &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}, zap.NewNop())
	require.NoError(t, err)
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	rootsFile = filepath.Join(dir, "roots.pem")
	require.NoError(t, os.WriteFile(rootsFile, EncodePEM(c.Bundle()), 0o644))
	for tok, node := range map[string]string{"tok-a": "node-a", "tok-b": "node-b", "bogus": "x"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, node), []byte(tok+"\n"), 0o600))
	}
	return ts.Listener.Addr().String(), rootsFile, dir
}

func pod(ns, name, node, sa string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: sa}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
}

func TestServerSignsOnlyForWorkloadsOnTheCallersNode(t *testing.T) {
	c := newCA(t)
	snap := model.NewSnapshot()
	for _, p := range []*corev1.Pod{pod("shop", "client", "node-a", "client"), pod("shop", "product", "node-b", "product")} {
		snap.Pods[model.KeyOf(p)] = p
	}
	pods := &SnapshotLocator{}
	pods.Update(snap)
	addr, roots, tokens := testServer(t, c, pods)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr := func(id identity.ID) []byte {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
		require.NoError(t, err)
		return der
	}
	clientFor := func(node string) *Client {
		cl, err := NewClient(ClientConfig{Address: addr, RootsFile: roots, TokenFile: filepath.Join(tokens, node)})
		require.NoError(t, err)
		return cl
	}
	ctx := context.Background()

	chain, err := clientFor("node-a").Sign(ctx, csr(client), client)
	require.NoError(t, err)
	require.Equal(t, client.URL().String(), chain[0].URIs[0].String())

	_, err = clientFor("node-a").Sign(ctx, csr(remote), remote)
	require.ErrorContains(t, err, "403")
	require.ErrorContains(t, err, "no running pod with identity spiffe://cluster.local/ns/shop/sa/product on node node-a")

	_, err = clientFor("x").Sign(ctx, csr(client), client)
	require.ErrorContains(t, err, "401", "an unknown token is refused")

	_, err = clientFor("node-a").Sign(ctx, csr(remote), client)
	require.ErrorContains(t, err, "400", "a CSR for another identity than asked is refused")

	bundle, err := clientFor("node-b").Bundle(ctx)
	require.NoError(t, err)
	require.Len(t, bundle, 1)

	// A client that does not trust the CA's root refuses to talk to it.
	other := newCA(t)
	otherRoots := filepath.Join(t.TempDir(), "other.pem")
	require.NoError(t, os.WriteFile(otherRoots, EncodePEM(other.Bundle()), 0o644))
	cl, err := NewClient(ClientConfig{Address: addr, RootsFile: otherRoots, TokenFile: filepath.Join(tokens, "node-a")})
	require.NoError(t, err)
	_, err = cl.Sign(ctx, csr(client), client)
	require.ErrorContains(t, err, "certificate signed by unknown authority")
}

func TestManagerIssuesAndRenews(t *testing.T) {
	c := newCA(t)
	snap := model.NewSnapshot()
	p := pod("shop", "client", "node-a", "client")
	snap.Pods[model.KeyOf(p)] = p
	pods := &SnapshotLocator{}
	pods.Update(snap)
	addr, roots, tokens := testServer(t, c, pods)
	cl, err := NewClient(ClientConfig{Address: addr, RootsFile: roots, TokenFile: filepath.Join(tokens, "node-a"), TTL: 3 * time.Second})
	require.NoError(t, err)
	m, err := identity.NewManager(identity.ManagerConfig{Signer: cl}, zap.NewNop())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx)

	m.SetIdentities([]identity.ID{client, remote})
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	first, err := m.WaitCertificate(wctx, client)
	require.NoError(t, err)
	_, err = m.Certificate(remote)
	require.ErrorIs(t, err, identity.ErrNoCertificate, "the CA refuses a workload not on this node")

	// Lifetime 3s (plus the CA's backdating for skew): renewed at half of
	// what is left, so within two seconds a new certificate replaces it.
	st := m.Status()
	require.Len(t, st, 2)
	for _, s := range st {
		if s.Identity == client.String() {
			require.WithinDuration(t, time.Now().Add(1500*time.Millisecond), s.RenewAt, time.Second)
		}
	}
	require.Eventually(t, func() bool {
		c, err := m.Certificate(client)
		return err == nil && c.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) != 0
	}, 5*time.Second, 50*time.Millisecond, "renewed at half-life")
	require.NotNil(t, first.Leaf)
	require.True(t, m.Roots().Equal(m.Roots()))
	require.Len(t, m.Bundle(), 1)
}
