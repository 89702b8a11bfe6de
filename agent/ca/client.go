package ca

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/skeinmesh/skein/agent/identity"
)

// Client asks a skein-ca for certificates on behalf of a node agent. It
// implements identity.Signer.
type Client struct {
	url       string
	tokenFile string
	ttl       time.Duration
	http      *http.Client
}

var _ identity.Signer = (*Client)(nil)

// ClientConfig configures a Client.
type ClientConfig struct {
	// Address of the CA, host:port. Required.
	Address string
	// ServerName to verify in the CA's certificate; empty: the host of
	// Address.
	ServerName string
	// RootsFile is a PEM file with the CA's roots, to verify the CA server.
	// Required: there is no trust on first use.
	RootsFile string
	// TokenFile holds the bearer token; read at every request, so a
	// rotated projected token is picked up. Required.
	TokenFile string
	// TTL asks for a certificate lifetime; zero: the CA's maximum.
	TTL time.Duration
	// DialContext, if set, opens the connections to the CA (tests use it
	// to stay inside a network namespace).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// NewClient validates cfg and loads the CA roots.
func NewClient(cfg ClientConfig) (*Client, error) {
	var errs []error
	if cfg.Address == "" {
		errs = append(errs, errors.New("ca client: the CA address is required (--ca-address)"))
	}
	if cfg.RootsFile == "" {
		errs = append(errs, errors.New("ca client: the CA's root certificates are required (--ca-roots)"))
	}
	if cfg.TokenFile == "" {
		errs = append(errs, errors.New("ca client: a token file is required (--ca-token-file)"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(cfg.RootsFile)
	if err != nil {
		return nil, fmt.Errorf("read CA roots: %w", err)
	}
	roots, err := ParsePEM(data)
	if err != nil {
		return nil, fmt.Errorf("CA roots %s: %w", cfg.RootsFile, err)
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: cfg.ServerName}
	return &Client{
		url:       "https://" + cfg.Address,
		tokenFile: cfg.TokenFile,
		ttl:       cfg.TTL,
		http: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
			TLSClientConfig: tc, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 2, DialContext: cfg.DialContext,
		}},
	}, nil
}

// Sign implements identity.Signer.
func (c *Client) Sign(ctx context.Context, csrDER []byte, id identity.ID) ([]*x509.Certificate, error) {
	tok, err := os.ReadFile(c.tokenFile)
	if err != nil {
		return nil, fmt.Errorf("read CA token: %w", err)
	}
	body, _ := json.Marshal(SignRequest{
		CSR:        string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})),
		Identity:   id.String(),
		TTLSeconds: int64(c.ttl / time.Second),
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+"/v1/sign", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ask the CA: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read CA answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e ErrorResponse
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("the CA refused (%s): %s", resp.Status, e.Error)
		}
		return nil, fmt.Errorf("the CA answered %s", resp.Status)
	}
	var sr SignResponse
	if err := json.Unmarshal(data, &sr); err != nil {
		return nil, fmt.Errorf("decode CA answer: %w", err)
	}
	return ParsePEM([]byte(sr.Chain))
}

// Bundle implements identity.Signer.
func (c *Client) Bundle(ctx context.Context) ([]*x509.Certificate, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/v1/bundle", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch trust bundle: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch trust bundle: the CA answered %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	return ParsePEM(data)
}
