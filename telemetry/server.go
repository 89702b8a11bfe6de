package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// ServerConfig configures the exporter's HTTP server.
type ServerConfig struct {
	// Addr to listen on. Empty: ":15020".
	Addr string
	// Listener, if set, is used instead of listening on Addr (a listener
	// handed over by the previous agent).
	Listener net.Listener
	// Gatherer is what /metrics serves. Required.
	Gatherer prometheus.Gatherer
	// Ready reports readiness for /readyz: nil error means ready. nil
	// means always ready.
	Ready func() error
}

// Server serves metrics and health.
type Server struct {
	cfg ServerConfig
	log *zap.Logger
	srv *http.Server
}

// NewServer validates cfg.
func NewServer(cfg ServerConfig, log *zap.Logger) (*Server, error) {
	if cfg.Gatherer == nil {
		return nil, errors.New("telemetry server: a Gatherer is required")
	}
	if cfg.Addr == "" {
		cfg.Addr = ":15020"
	}
	s := &Server{cfg: cfg, log: log.Named("metrics")}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{
		ErrorLog:          zap.NewStdLog(s.log),
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if cfg.Ready != nil {
			if err := cfg.Ready(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s, nil
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ln := s.cfg.Listener
	if ln == nil {
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		var err error
		if ln, err = lc.Listen(ctx, "tcp", s.cfg.Addr); err != nil {
			return fmt.Errorf("listen for metrics on %s: %w", s.cfg.Addr, err)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		return fmt.Errorf("serve metrics: %w", err)
	}
}
