package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// goProxyConfig is the plain Go reverse proxy, the floor of the
// comparison: what net/http and httputil.ReverseProxy cost with nothing of
// a mesh on top (no capture, routing table, balancing, telemetry).
type goProxyConfig struct {
	Listen string
	// Upstream receives HTTP/1.1 and h2c; GRPCUpstream, if set, gRPC.
	Upstream, GRPCUpstream string
	// TLSDir holds ca.crt, server.crt/key and client.crt/key (see the
	// harness): ListenTLS serves TLS 1.3 with client certificates, and an
	// https upstream is dialed with the client certificate.
	TLSDir    string
	ListenTLS bool
	PidFile   string
	// FlushInterval is httputil.ReverseProxy's: 0 (the default) flushes
	// at the end, -1 after every write, as Skein's proxy does.
	FlushInterval time.Duration
}

func newGoProxyCommand() *cobra.Command {
	var c goProxyConfig
	cmd := &cobra.Command{
		Use:   "goproxy",
		Short: "A plain httputil.ReverseProxy for HTTP/1.1, h2c and gRPC (the floor of the proxy comparison)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runGoProxy(ctx, c)
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.Listen, "listen", "", "address to listen on")
	f.StringVar(&c.Upstream, "upstream", "", "http:// or https:// URL of the HTTP upstream")
	f.StringVar(&c.GRPCUpstream, "grpc-upstream", "", "URL of the gRPC upstream (default: --upstream)")
	f.StringVar(&c.TLSDir, "tls-dir", "", "directory with ca.crt, server.crt, server.key, client.crt, client.key")
	f.BoolVar(&c.ListenTLS, "listen-tls", false, "serve TLS 1.3 (h2 and http/1.1) and require a client certificate")
	f.StringVar(&c.PidFile, "pid-file", "", "write the pid here")
	f.DurationVar(&c.FlushInterval, "flush-interval", 0, "ReverseProxy.FlushInterval: -1 flushes after every write (what it costs is worth knowing)")
	return cmd
}

func runGoProxy(ctx context.Context, c goProxyConfig) error {
	up, err := url.Parse(c.Upstream)
	if err != nil || (up.Scheme != "http" && up.Scheme != "https") {
		return fmt.Errorf("--upstream %q: want an http:// or https:// URL", c.Upstream)
	}
	grpcUp := up
	if c.GRPCUpstream != "" {
		if grpcUp, err = url.Parse(c.GRPCUpstream); err != nil {
			return fmt.Errorf("--grpc-upstream: %w", err)
		}
	}
	var serverTLS, clientTLS *tls.Config
	if c.TLSDir != "" {
		if serverTLS, clientTLS, err = loadTLSDir(c.TLSDir); err != nil {
			return err
		}
	}
	// One transport per upstream protocol: HTTP/1.1 requests go out as
	// HTTP/1.1, HTTP/2 ones (h2c, gRPC) as HTTP/2, as Skein does.
	var p1, p2 http.Protocols
	p1.SetHTTP1(true)
	if up.Scheme == "https" {
		p2.SetHTTP2(true)
	} else {
		p2.SetUnencryptedHTTP2(true)
	}
	// Each transport gets a TLS config of its own: configuring HTTP/2 adds
	// "h2" to the config's ALPN list, which would make the HTTP/1.1
	// transport negotiate a protocol it does not speak.
	var tls1, tls2 *tls.Config
	if clientTLS != nil {
		tls1, tls2 = clientTLS.Clone(), clientTLS.Clone()
		tls1.NextProtos = []string{"http/1.1"}
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	h1 := &http.Transport{Protocols: &p1, DialContext: dialer.DialContext, TLSClientConfig: tls1,
		MaxIdleConnsPerHost: 256, DisableCompression: true, IdleConnTimeout: 90 * time.Second}
	h2 := &http.Transport{Protocols: &p2, DialContext: dialer.DialContext, TLSClientConfig: tls2,
		DisableCompression: true, IdleConnTimeout: 90 * time.Second}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			target := up
			if strings.HasPrefix(pr.In.Header.Get("Content-Type"), "application/grpc") {
				target = grpcUp
			}
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		},
		Transport:     protoSwitch{h1: h1, h2: h2},
		FlushInterval: c.FlushInterval,
	}
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(ctx, "tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.Listen, err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	if c.ListenTLS {
		if serverTLS == nil {
			return errors.New("--listen-tls needs --tls-dir")
		}
		protocols.SetHTTP2(true)
		ln = tls.NewListener(ln, serverTLS)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	srv := &http.Server{Handler: rp, Protocols: &protocols, TLSConfig: serverTLS, ReadHeaderTimeout: 10 * time.Second}
	if c.PidFile != "" {
		if err := os.WriteFile(c.PidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return err
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return nil
}

// protoSwitch sends a request out with the HTTP major version it came in.
type protoSwitch struct{ h1, h2 http.RoundTripper }

func (p protoSwitch) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.ProtoMajor == 2 {
		return p.h2.RoundTrip(r)
	}
	return p.h1.RoundTrip(r)
}

// loadTLSDir reads the harness's certificates: a server config that
// requires client certificates from the CA, and a client config that
// presents one and verifies the server against the CA. Both TLS 1.3 only.
func loadTLSDir(dir string) (server, client *tls.Config, err error) {
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("no certificate in %s/ca.crt", dir)
	}
	sc, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	if err != nil {
		return nil, nil, err
	}
	cc, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key"))
	if err != nil {
		return nil, nil, err
	}
	server = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{sc},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, NextProtos: []string{"h2", "http/1.1"}}
	client = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cc}, RootCAs: pool, ServerName: tlsServerName}
	return server, client, nil
}

// tlsServerName is the DNS name in the harness's server certificate.
const tlsServerName = "bench-peer"
