//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netns"
	"golang.org/x/net/http2"

	"github.com/skeinmesh/skein/agent/ca"
	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/scripts/lab"
)

const mtlsTopology = `
nodes: [{name: node-a}, {name: node-b}]
namespaces:
  - {name: shop, labels: {skein.io/mesh: enabled}}
  - {name: other, labels: {skein.io/mesh: enabled}}
  - {name: vault, labels: {skein.io/mesh: enabled, skein.io/mtls-mode: STRICT}}
  - {name: legacy}
pods:
  - {name: client, namespace: shop, node: node-a, serviceAccount: client, labels: {app: client}, command: [sleep, infinity]}
  - {name: stranger, namespace: other, node: node-a, labels: {app: stranger}, command: [sleep, infinity]}
  - {name: outsider, namespace: legacy, node: node-a, labels: {app: outsider}, command: [sleep, infinity]}
  - name: product-v1
    namespace: shop
    node: node-a
    serviceAccount: product
    labels: {app: product}
    ports: [{name: http, containerPort: 8080}]
    command: [skein-lab, echo, --listen, ":8080"]
  - name: product-v2
    namespace: shop
    node: node-b
    serviceAccount: product
    labels: {app: product}
    ports: [{name: http, containerPort: 8080}]
    command: [skein-lab, echo, --listen, ":8080"]
  - name: profile
    namespace: shop
    node: node-b
    serviceAccount: profile
    labels: {app: profile}
    ports: [{name: http, containerPort: 8080}]
    command: [skein-lab, echo, --listen, ":8080"]
  - name: safe
    namespace: vault
    node: node-b
    labels: {app: safe}
    ports: [{name: http, containerPort: 8080}]
    command: [skein-lab, echo, --listen, ":8080"]
services:
  - {name: product, namespace: shop, clusterIP: 10.96.0.10, selector: {app: product}, ports: [{name: http, port: 80, targetPort: 8080}]}
  - {name: profile, namespace: shop, clusterIP: 10.96.0.11, selector: {app: profile}, ports: [{name: http, port: 80, targetPort: 8080}]}
`

// newMeshEnv is newEnv with the lab's CA, so nodes talk mTLS.
func newMeshEnv(t *testing.T, topology string, agentArgs []string) *env {
	t.Helper()
	return newEnvOpts(t, topology, func(o *lab.Options) {
		o.CABinary = filepath.Join(binDir, "skein-ca")
		o.AgentArgs = append(o.AgentArgs, agentArgs...)
	})
}

func TestPrivilegedMTLS(t *testing.T) {
	e := newMeshEnv(t, mtlsTopology, nil)
	podIP := func(name string) string { return e.lab.Pod(name).IP }
	nodeB := e.lab.Nodes()[1]

	t.Run("workloads get certificates from the CA, listed by agentctl certs", func(t *testing.T) {
		require.Eventually(t, func() bool {
			out, err := e.agentctl("node-b", "certs")
			return err == nil && strings.Contains(out, "spiffe://cluster.local/ns/shop/sa/product") &&
				strings.Contains(out, "spiffe://cluster.local/ns/shop/sa/profile") && !strings.Contains(out, "NOT ISSUED")
		}, 20*time.Second, 200*time.Millisecond)
		out, err := e.agentctl("node-b", "certs")
		require.NoError(t, err)
		require.Contains(t, out, "CN=Skein root CA")
		require.Contains(t, out, "TRUST BUNDLE")
	})

	t.Run("a cross-node request travels only as TLS on the underlay", func(t *testing.T) {
		pcap := filepath.Join(t.TempDir(), "underlay.pcap")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		capture := exec.CommandContext(ctx, "nsenter", "--net="+nodeB.NetnsPath, "--",
			"tshark", "-n", "-q", "-i", "ul0", "-f", "tcp", "-a", "duration:4", "-w", pcap)
		var capOut bytes.Buffer
		capture.Stdout, capture.Stderr = &capOut, &capOut
		require.NoError(t, capture.Start())
		require.Eventually(t, func() bool { return strings.Contains(capOut.String(), "Capturing on") },
			10*time.Second, 50*time.Millisecond, "tshark started: %s", capOut.String())
		time.Sleep(300 * time.Millisecond)
		for i := 0; i < 3; i++ {
			r := parseEcho(t, e.mustCurl("shop/client", fmt.Sprintf("http://%s:8080/secret-marker-%d", podIP("product-v2"), i)))
			require.Equal(t, "product-v2", r.Pod)
		}
		require.NoError(t, capture.Wait(), capOut.String())
		raw, err := os.ReadFile(pcap)
		require.NoError(t, err)
		require.False(t, bytes.Contains(raw, []byte("secret-marker")), "no plaintext of the request on the wire")
		tlsFrames := tsharkCount(t, pcap, "tls && tcp.port == 15008")
		httpFrames := tsharkCount(t, pcap, "http")
		require.Positive(t, tlsFrames, "TLS on the tunnel port")
		require.Zero(t, httpFrames, "no HTTP on the wire")
	})

	t.Run("the destination proxy sees the source's SPIFFE identity", func(t *testing.T) {
		e.mustCurl("shop/client", "http://10.96.0.11/whoami")
		require.Eventually(t, func() bool {
			return strings.Contains(e.lab.AgentLog("node-b"), `"src_principal":"spiffe://cluster.local/ns/shop/sa/client"`)
		}, 5*time.Second, 100*time.Millisecond)
	})

	// A tunnel client of our own, in node-a's network namespace, for what a
	// legitimate proxy never sends.
	tunnelTo := func(t *testing.T, cert tls.Certificate, dst spiffe.ID, target string, path string) (int, error) {
		t.Helper()
		conn, err := dialInNetns(e.lab.NodeNetns("node-a"), net.JoinHostPort(nodeB.IP, "15008"))
		require.NoError(t, err)
		defer conn.Close()
		tc := tls.Client(conn, &tls.Config{
			MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}, ServerName: dst.SNI(),
			Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true,
		})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tc.HandshakeContext(ctx); err != nil {
			return 0, err
		}
		cc, err := (&http2.Transport{}).NewClientConn(tc)
		if err != nil {
			return 0, err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+nodeB.IP+":15008"+path, nil)
		req.Header.Set("Skein-Target", target)
		req.Header.Set("Skein-Protocol", "http1")
		resp, err := cc.RoundTrip(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	product := spiffe.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "product"}
	client := spiffe.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "client"}
	target := podIP("product-v2") + ":8080"
	labCA := func(t *testing.T, now time.Time) *ca.LocalCA {
		c, err := ca.LoadOrCreate(ca.LocalConfig{Dir: filepath.Join(e.lab.CADir(), "keys"), TrustDomain: "cluster.local",
			Now: func() time.Time { return now }})
		require.NoError(t, err)
		return c
	}

	t.Run("a tunnel client with a certificate of the lab CA gets through", func(t *testing.T) {
		code, err := tunnelTo(t, issue(t, labCA(t, time.Now()), client, time.Hour), product, target, "/ok")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code)
	})

	t.Run("a tunnel client with a certificate from another CA is refused", func(t *testing.T) {
		other, err := ca.LoadOrCreate(ca.LocalConfig{Dir: t.TempDir(), TrustDomain: "cluster.local"})
		require.NoError(t, err)
		_, err = tunnelTo(t, issue(t, other, client, time.Hour), product, target, "/")
		requireTLSRefused(t, err)
	})

	t.Run("a tunnel client with an expired certificate is refused", func(t *testing.T) {
		_, err := tunnelTo(t, issue(t, labCA(t, time.Now().Add(-3*time.Hour)), client, time.Hour), product, target, "/")
		requireTLSRefused(t, err)
	})

	t.Run("a stream for a pod of another identity than the one asked for is refused", func(t *testing.T) {
		profile := podIP("profile") + ":8080"
		code, err := tunnelTo(t, issue(t, labCA(t, time.Now()), client, time.Hour), product, profile, "/")
		require.NoError(t, err)
		require.Equal(t, http.StatusMisdirectedRequest, code)
	})

	t.Run("the CA refuses to sign for a workload not on the requesting node", func(t *testing.T) {
		cl, err := ca.NewClient(ca.ClientConfig{Address: e.lab.CAAddress(), RootsFile: filepath.Join(e.lab.CADir(), "roots.pem"),
			TokenFile: filepath.Join(e.lab.StateDir(), "node-a", "ca-token"),
			// Dial inside node-a's namespace: the lab's addresses must
			// never be dialed from the host's.
			DialContext: func(_ context.Context, _, addr string) (net.Conn, error) {
				return dialInNetns(e.lab.NodeNetns("node-a"), addr)
			}})
		require.NoError(t, err)
		profile := spiffe.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "profile"}
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{profile.URL()}}, key)
		require.NoError(t, err)
		_, err = cl.Sign(context.Background(), csr, profile)
		require.ErrorContains(t, err, "no running pod with identity spiffe://cluster.local/ns/shop/sa/profile on node node-a")
	})

	t.Run("STRICT blocks a client from outside the mesh while mesh clients still work", func(t *testing.T) {
		url := fmt.Sprintf("http://%s:8080/", podIP("safe"))
		before := e.status("node-b").StrictDrops
		_, err := e.curl("legacy/outsider", "--connect-timeout", "2", url)
		require.Error(t, err, "plaintext from outside the mesh is dropped")
		require.Greater(t, e.status("node-b").StrictDrops, before, "and counted")
		r := parseEcho(t, e.mustCurl("shop/client", url))
		require.Equal(t, "safe", r.Pod, "a meshed client reaches it through the tunnel")
		// Permissive namespaces still accept plaintext.
		parseEcho(t, e.mustCurl("legacy/outsider", fmt.Sprintf("http://%s:8080/", podIP("product-v2"))))
		out, err := e.agentctl("node-b", "workloads")
		require.NoError(t, err)
		require.Regexp(t, `vault\s+safe\s+.*yes\s+STRICT`, out)
	})

	t.Run("AuthorizationPolicy allows and denies by principal, namespace, method and path", func(t *testing.T) {
		require.NoError(t, e.lab.SetObjects([]byte(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: product-readers, namespace: shop}
spec:
  selector: {matchLabels: {app: product}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/shop/sa/client"]}}]
    to: [{operation: {methods: ["GET"], paths: ["/items*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-strangers, namespace: shop}
spec:
  selector: {matchLabels: {app: profile}}
  action: DENY
  rules:
  - from: [{source: {namespaces: ["other"]}}]
`)))
		code := func(pod, method, url string) string {
			out, _ := e.curl(pod, "-o", "/dev/null", "-w", "%{http_code}", "-X", method, url)
			return out
		}
		v2 := fmt.Sprintf("http://%s:8080", podIP("product-v2")) // across the tunnel
		v1 := fmt.Sprintf("http://%s:8080", podIP("product-v1")) // on the same node
		require.Eventually(t, func() bool { return code("shop/client", "GET", v2+"/other") == "403" }, 10*time.Second, 100*time.Millisecond)
		for _, base := range []string{v1, v2} {
			require.Equal(t, "200", code("shop/client", "GET", base+"/items/1"), "%s: allowed principal, method and path", base)
			require.Equal(t, "403", code("shop/client", "POST", base+"/items/1"), "%s: method not allowed", base)
			require.Equal(t, "403", code("shop/client", "GET", base+"/admin"), "%s: path not allowed", base)
			require.Equal(t, "403", code("other/stranger", "GET", base+"/items/1"), "%s: principal not allowed", base)
		}
		require.Equal(t, "403", code("other/stranger", "GET", "http://10.96.0.11/"), "denied by namespace")
		require.Equal(t, "200", code("shop/client", "GET", "http://10.96.0.11/"), "other namespaces pass the DENY")
		st := e.status("node-b")
		require.Positive(t, st.Proxy.AuthzDenied)
		require.Contains(t, e.lab.AgentLog("node-b"), `"msg":"authorization denied"`)
		require.NoError(t, e.lab.SetObjects())
	})
}

// requireTLSRefused checks that the server refused our certificate: in TLS
// 1.3 the client learns it from an alert or a closed connection after its
// own handshake is done.
func requireTLSRefused(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	msg := err.Error()
	require.True(t, strings.Contains(msg, "bad certificate") || strings.Contains(msg, "broken pipe") ||
		strings.Contains(msg, "connection reset") || strings.Contains(msg, "EOF"), "refused: %v", err)
}

// issue signs a certificate for id with c, valid for ttl from c's clock.
func issue(t *testing.T, c *ca.LocalCA, id spiffe.ID, ttl time.Duration) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	require.NoError(t, err)
	csr, err := x509.ParseCertificateRequest(der)
	require.NoError(t, err)
	chain, err := c.Sign(csr, id, ttl)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{chain[0].Raw}, PrivateKey: key, Leaf: chain[0]}
}

// inNetns runs fn on a thread in the network namespace at path.
func inNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is left to die rather than returned to the pool in
		// another namespace.
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// dialInNetns opens a TCP connection from inside a network namespace; the
// socket stays in that namespace whatever thread uses it afterwards.
func dialInNetns(path, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(path, func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 3*time.Second)
		return err
	})
	return c, err
}

// tsharkCount counts the frames of a capture that match a display filter.
func tsharkCount(t *testing.T, pcap, filter string) int {
	t.Helper()
	out, err := exec.Command("tshark", "-n", "-r", pcap, "-Y", filter, "-T", "fields", "-e", "frame.number").Output()
	require.NoError(t, err)
	return len(strings.Fields(string(out)))
}
