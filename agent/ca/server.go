package ca

import (
	"bufio"
	"context"
	"crypto/subtle"
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
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/skeinmesh/skein/agent/identity"
)

// Caller is an authenticated agent.
type Caller struct {
	// Node is the node the agent runs on: it may only get certificates for
	// workloads on that node.
	Node string
	// Name describes the caller for logs (a service account, a token name).
	Name string
}

// ErrUnauthenticated is returned by an Authenticator for a request without
// valid credentials.
var ErrUnauthenticated = errors.New("unauthenticated")

// Authenticator authenticates the agent behind a signing request.
type Authenticator interface {
	Authenticate(ctx context.Context, r *http.Request) (Caller, error)
}

// PodLocator answers whether a workload identity has a running pod on a node.
type PodLocator interface {
	HasWorkload(node string, id identity.ID) bool
}

// SignRequest is the body of POST /v1/sign.
type SignRequest struct {
	// CSR is a PEM "CERTIFICATE REQUEST".
	CSR string `json:"csr"`
	// Identity is the SPIFFE ID asked for; it must be the CSR's URI SAN.
	Identity string `json:"identity"`
	// TTLSeconds asks for a lifetime; the CA caps it. Zero: the maximum.
	TTLSeconds int64 `json:"ttlSeconds,omitempty"`
}

// SignResponse answers POST /v1/sign.
type SignResponse struct {
	// Chain is PEM certificates, leaf first.
	Chain string `json:"chain"`
	// Bundle is the PEM trust bundle.
	Bundle string `json:"bundle"`
}

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

// ServerConfig configures the CA's HTTPS server.
type ServerConfig struct {
	// Addr to listen on, e.g. ":15012". Required.
	Addr string
	// Signer signs. Required.
	Signer Signer
	// Authn authenticates callers. Required.
	Authn Authenticator
	// Pods checks that a workload runs on the caller's node. Required.
	Pods PodLocator
	// TLS is the server's certificate. Required.
	TLS *tls.Certificate
}

// Server is the CA's API.
type Server struct {
	cfg     ServerConfig
	log     *zap.Logger
	signed  atomic.Int64
	refused atomic.Int64
}

// NewServer validates cfg.
func NewServer(cfg ServerConfig, log *zap.Logger) (*Server, error) {
	var errs []error
	if cfg.Addr == "" {
		errs = append(errs, errors.New("ca server: Addr is required"))
	}
	if cfg.Signer == nil || cfg.Authn == nil || cfg.Pods == nil || cfg.TLS == nil {
		errs = append(errs, errors.New("ca server: Signer, Authn, Pods and TLS are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, log: log.Named("ca")}, nil
}

// Handler returns the API's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/sign", s.sign)
	mux.HandleFunc("GET /v1/bundle", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(EncodePEM(s.cfg.Signer.Bundle()))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	return mux
}

func (s *Server) refuse(w http.ResponseWriter, code int, msg string) {
	s.refused.Add(1)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(ErrorResponse{Error: msg})
}

func (s *Server) sign(w http.ResponseWriter, r *http.Request) {
	caller, err := s.cfg.Authn.Authenticate(r.Context(), r)
	if err != nil {
		s.log.Warn("refused unauthenticated signing request", zap.String("remote", r.RemoteAddr), zap.Error(err))
		s.refuse(w, http.StatusUnauthorized, err.Error())
		return
	}
	var req SignRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		s.refuse(w, http.StatusBadRequest, "decode request: "+err.Error())
		return
	}
	id, err := identity.Parse(req.Identity)
	if err != nil {
		s.refuse(w, http.StatusBadRequest, err.Error())
		return
	}
	if !s.cfg.Pods.HasWorkload(caller.Node, id) {
		s.log.Warn("refused to sign for a workload not on the caller's node",
			zap.String("caller", caller.Name), zap.String("node", caller.Node), zap.Stringer("identity", id))
		s.refuse(w, http.StatusForbidden, fmt.Sprintf("no running pod with identity %s on node %s", id, caller.Node))
		return
	}
	block, _ := pem.Decode([]byte(req.CSR))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		s.refuse(w, http.StatusBadRequest, "csr: want a PEM CERTIFICATE REQUEST")
		return
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		s.refuse(w, http.StatusBadRequest, "csr: "+err.Error())
		return
	}
	chain, err := s.cfg.Signer.Sign(csr, id, time.Duration(req.TTLSeconds)*time.Second)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, ErrBadCSR) {
			code = http.StatusBadRequest
		}
		s.refuse(w, code, err.Error())
		return
	}
	s.signed.Add(1)
	s.log.Info("signed workload certificate", zap.String("node", caller.Node), zap.Stringer("identity", id),
		zap.Time("not_after", chain[0].NotAfter))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(SignResponse{Chain: string(EncodePEM(chain)), Bundle: string(EncodePEM(s.cfg.Signer.Bundle()))})
}

// Counters returns how many requests were signed and refused.
func (s *Server) Counters() (signed, refused int64) { return s.signed.Load(), s.refused.Load() }

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*s.cfg.TLS}},
		ErrorLog:          zap.NewStdLog(s.log),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	case err := <-errc:
		return err
	}
}

// TokenFile authenticates bearer tokens listed in a file, one "<token>
// <node>" per line (# comments allowed): the standalone and lab mode. The
// file is re-read when it changes.
type TokenFile struct {
	path string
	mu   sync.Mutex
	mod  time.Time
	toks map[string]string
}

var _ Authenticator = (*TokenFile)(nil)

// NewTokenFile reads path.
func NewTokenFile(path string) (*TokenFile, error) {
	t := &TokenFile{path: path}
	if _, err := t.tokens(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *TokenFile) tokens() (map[string]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, err := os.Stat(t.path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	if t.toks != nil && st.ModTime().Equal(t.mod) {
		return t.toks, nil
	}
	f, err := os.Open(t.path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	toks := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("token file %s line %d: want \"<token> <node>\"", t.path, n)
		}
		toks[f[0]] = f[1]
	}
	t.toks, t.mod = toks, st.ModTime()
	return toks, nil
}

// Authenticate implements Authenticator.
func (t *TokenFile) Authenticate(_ context.Context, r *http.Request) (Caller, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return Caller{}, fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	toks, err := t.tokens()
	if err != nil {
		return Caller{}, err
	}
	for known, node := range toks {
		if subtle.ConstantTimeCompare([]byte(known), []byte(tok)) == 1 {
			return Caller{Node: node, Name: "token for " + node}, nil
		}
	}
	return Caller{}, fmt.Errorf("%w: unknown token", ErrUnauthenticated)
}
