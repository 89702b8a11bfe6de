package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// Backend is what the admin API serves; the agent implements it.
type Backend interface {
	Status() Status
	Workloads() []Workload
	Services() []Service
	Routes() Routes
	Endpoints() []ServiceEndpoints
	Certs() Certs
	Logs(LogQuery) (Logs, error)
	Flows(FlowQuery) (Flows, error)
	FlowSummary() (FlowSummary, error)
}

// Server serves the admin API on a unix socket.
type Server struct {
	path    string
	log     *zap.Logger
	srv     *http.Server
	mux     *http.ServeMux
	backend Backend
}

// NewServer returns a server for backend on the socket at path.
func NewServer(path string, backend Backend, log *zap.Logger) (*Server, error) {
	if path == "" {
		return nil, errors.New("admin server: a socket path is required")
	}
	if backend == nil {
		return nil, errors.New("admin server: a backend is required")
	}
	s := &Server{path: path, log: log.Named("admin"), backend: backend, mux: http.NewServeMux()}
	s.Handle("GET "+APIVersion+"/status", func(*http.Request) (any, error) { return backend.Status(), nil })
	s.Handle("GET "+APIVersion+"/workloads", func(*http.Request) (any, error) { return backend.Workloads(), nil })
	s.Handle("GET "+APIVersion+"/services", func(*http.Request) (any, error) { return backend.Services(), nil })
	s.Handle("GET "+APIVersion+"/routes", func(*http.Request) (any, error) { return backend.Routes(), nil })
	s.Handle("GET "+APIVersion+"/endpoints", func(*http.Request) (any, error) { return backend.Endpoints(), nil })
	s.Handle("GET "+APIVersion+"/certs", func(*http.Request) (any, error) { return backend.Certs(), nil })
	s.Handle("GET "+APIVersion+"/logs", func(r *http.Request) (any, error) {
		q, err := ParseLogQuery(r.URL.Query(), time.Now())
		if err != nil {
			return nil, err
		}
		return backend.Logs(q)
	})
	s.Handle("GET "+APIVersion+"/flows", func(r *http.Request) (any, error) {
		q := FlowQuery{Pod: r.URL.Query().Get("pod"), Direction: r.URL.Query().Get("direction")}
		switch q.Direction {
		case "", "outbound", "inbound":
		default:
			return nil, BadRequest("direction %q: want outbound or inbound", q.Direction)
		}
		return backend.Flows(q)
	})
	s.Handle("GET "+APIVersion+"/flows/summary", func(*http.Request) (any, error) { return backend.FlowSummary() })
	s.srv = &http.Server{Handler: s.mux, ReadHeaderTimeout: 5 * time.Second}
	return s, nil
}

// Handle registers a JSON endpoint; pattern is a net/http ServeMux pattern.
// A handler's error is answered with a 500 and {"error": ...}.
func (s *Server) Handle(pattern string, h func(*http.Request) (any, error)) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		v, err := h(r)
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			code := http.StatusInternalServerError
			var he *HTTPError
			if errors.As(err, &he) {
				code = he.Code
			}
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(Error{Error: err.Error()})
			return
		}
		_ = json.NewEncoder(w).Encode(v)
	})
}

// HandleRaw registers a plain handler, for streams.
func (s *Server) HandleRaw(pattern string, h http.HandlerFunc) { s.mux.HandleFunc(pattern, h) }

// HTTPError is an error with a status code, e.g. 404 for an unknown pod.
type HTTPError struct {
	Code int
	Msg  string
}

func (e *HTTPError) Error() string { return e.Msg }

// NotFound returns a 404 error.
func NotFound(format string, args ...any) error {
	return &HTTPError{Code: http.StatusNotFound, Msg: fmt.Sprintf(format, args...)}
}

// BadRequest returns a 400 error.
func BadRequest(format string, args ...any) error {
	return &HTTPError{Code: http.StatusBadRequest, Msg: fmt.Sprintf(format, args...)}
}

// ParseLogQuery reads the query string of GET /v1/logs; since and until
// are RFC 3339 times or durations back from now ("10m"). A bad value is a
// 400 naming the parameter.
func ParseLogQuery(v url.Values, now time.Time) (LogQuery, error) {
	q := LogQuery{Workload: v.Get("workload"), TraceID: v.Get("trace"), Status: v.Get("status")}
	var err error
	if q.Since, err = parseLogTime(v.Get("since"), now); err != nil {
		return q, BadRequest("since: %v", err)
	}
	if q.Until, err = parseLogTime(v.Get("until"), now); err != nil {
		return q, BadRequest("until: %v", err)
	}
	if s := v.Get("limit"); s != "" {
		if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit < 0 {
			return q, BadRequest("limit %q: want a number of entries", s)
		}
	}
	return q, nil
}

func parseLogTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: want a duration back from now, e.g. 10m", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want a time (RFC 3339, e.g. 2026-11-25T12:00:00Z) or a duration such as 10m", s)
	}
	return t, nil
}

// Run serves until ctx ends. The socket is created with mode 0600 in a
// directory of mode 0700, replacing a stale socket left by a crash.
func (s *Server) Run(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("create admin socket dir: %w", err)
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale admin socket: %w", err)
	}
	ln, err := net.Listen("unix", s.path)
	if err != nil {
		return fmt.Errorf("listen on admin socket %s: %w", s.path, err)
	}
	if err := os.Chmod(s.path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("restrict admin socket: %w", err)
	}
	// A successor agent replaces the socket file while this one drains:
	// remove it on the way out only if it is still ours.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	mine, _ := os.Stat(s.path)
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
		if now, err := os.Stat(s.path); err == nil && mine != nil && os.SameFile(now, mine) {
			_ = os.Remove(s.path)
		}
		return nil
	case err := <-errc:
		return fmt.Errorf("serve admin API: %w", err)
	}
}
