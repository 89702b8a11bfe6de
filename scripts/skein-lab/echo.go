package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// Bounds of what a request may ask the echo server for.
const (
	maxEchoDelay = time.Minute
	maxEchoSize  = 16 << 20
)

// echoReply is the JSON body of every echo response.
type echoReply struct {
	Pod       string            `json:"pod"`
	Namespace string            `json:"namespace"`
	Node      string            `json:"node"`
	Method    string            `json:"method"`
	Host      string            `json:"host"`
	Path      string            `json:"path"`
	Query     string            `json:"query"`
	Proto     string            `json:"proto"`
	Headers   map[string]string `json:"headers"`
	Remote    string            `json:"remote"`
	// Downstream is the reply of the --call URL, DownstreamStatus its
	// status, DownstreamError why the call failed.
	Downstream       json.RawMessage `json:"downstream,omitempty"`
	DownstreamStatus int             `json:"downstreamStatus,omitempty"`
	DownstreamError  string          `json:"downstreamError,omitempty"`
	Padding          string          `json:"padding,omitempty"`
}

// echoHandler answers every request with what it saw. Query parameters
// inject behaviour: status=503 sets the status code, delay=200ms waits
// before answering, size=1024 pads the body to at least that many bytes,
// abort=1 resets the connection (RST) instead of answering: a server that
// crashes mid-request.
type echoHandler struct {
	pod, namespace, node string
	// status and delay apply to requests that do not set their own: a pod
	// that always fails or is always slow (--status, --delay).
	status int
	delay  time.Duration
	// call, if set, is a URL called for every request before answering,
	// with the request's trace headers (a service with a dependency).
	call   string
	client *http.Client
}

// propagatedHeaders are the headers an app instrumented for tracing copies
// from the request it serves to the requests it makes: W3C trace context,
// B3 (single and multi header) and the request id.
var propagatedHeaders = []string{
	"Traceparent", "Tracestate", "B3", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Parentspanid",
	"X-B3-Sampled", "X-B3-Flags", "X-Request-Id",
}

// maxDownstreamBody bounds the downstream reply kept in ours.
const maxDownstreamBody = 1 << 20

// callDownstream calls h.call with r's trace headers and puts its reply
// into reply; a failed call makes the answer a 502.
func (h echoHandler) callDownstream(r *http.Request, reply *echoReply) (failed bool) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, h.call, nil)
	if err != nil {
		reply.DownstreamError = err.Error()
		return true
	}
	for _, k := range propagatedHeaders {
		if v := r.Header.Values(k); len(v) > 0 {
			req.Header[k] = v
		}
	}
	resp, err := h.client.Do(req)
	if err != nil {
		reply.DownstreamError = err.Error()
		return true
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDownstreamBody))
	if err != nil {
		reply.DownstreamError = "read reply: " + err.Error()
		return true
	}
	reply.DownstreamStatus = resp.StatusCode
	if json.Valid(body) {
		reply.Downstream = json.RawMessage(bytes.TrimSpace(body))
	} else {
		quoted, _ := json.Marshal(string(body))
		reply.Downstream = quoted
	}
	return false
}

func (h echoHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("abort") != "" {
		abort(w)
		return
	}
	status := http.StatusOK
	if h.status != 0 {
		status = h.status
	}
	if h.delay > 0 && q.Get("delay") == "" {
		q.Set("delay", h.delay.String())
	}
	if s := q.Get("status"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 100 || n > 999 {
			http.Error(w, fmt.Sprintf("status=%q: want a number from 100 to 999", s), http.StatusBadRequest)
			return
		}
		status = n
	}
	if s := q.Get("delay"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > maxEchoDelay {
			http.Error(w, fmt.Sprintf("delay=%q: want a duration from 0 to %s, e.g. 200ms", s, maxEchoDelay), http.StatusBadRequest)
			return
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	size := 0
	if s := q.Get("size"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > maxEchoSize {
			http.Error(w, fmt.Sprintf("size=%q: want a byte count from 0 to %d", s, maxEchoSize), http.StatusBadRequest)
			return
		}
		size = n
	}
	headers := make(map[string]string, len(r.Header))
	for k, v := range r.Header {
		headers[k] = strings.Join(v, ", ")
	}
	reply := echoReply{
		Pod: h.pod, Namespace: h.namespace, Node: h.node,
		Method: r.Method, Host: r.Host, Path: r.URL.Path, Query: r.URL.RawQuery,
		Proto: r.Proto, Headers: headers, Remote: r.RemoteAddr,
	}
	if h.call != "" && h.callDownstream(r, &reply) && q.Get("status") == "" && h.status == 0 {
		status = http.StatusBadGateway
	}
	body, err := marshalPadded(reply, size)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("X-Skein-Lab-Pod", h.pod)
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// abort closes the request's connection with a reset: SO_LINGER 0 makes
// close send RST instead of FIN. An HTTP/2 connection, which carries other
// streams, cannot be taken over: the stream is reset instead.
func abort(w http.ResponseWriter) {
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// marshalPadded marshals the reply with a trailing newline and, if size is
// larger, a padding field that brings the body to exactly size bytes.
func marshalPadded(reply echoReply, size int) ([]byte, error) {
	body, err := json.Marshal(reply)
	if err != nil {
		return nil, err
	}
	body = append(body, '\n')
	const overhead = len(`,"padding":""`)
	if size <= len(body) {
		return body, nil
	}
	n := size - len(body) - overhead
	if n < 1 {
		n = 1 // the smallest padding; the body ends up a few bytes over size
	}
	reply.Padding = strings.Repeat("x", n)
	body, err = json.Marshal(reply)
	if err != nil {
		return nil, err
	}
	return append(body, '\n'), nil
}

func newEchoCommand() *cobra.Command {
	var listen string
	var verbose bool
	var status int
	var delay time.Duration
	var call string
	cmd := &cobra.Command{
		Use:   "echo",
		Short: "Serve HTTP/1.1 and h2c, answering every request with JSON about it (a test backend)",
		Long: `echo answers every HTTP/1.1 and cleartext HTTP/2 (prior knowledge) request with
JSON: {pod, namespace, node, method, host, path, query, proto, headers, remote}.
pod, namespace and node come from SKEIN_LAB_POD, SKEIN_LAB_NAMESPACE and
SKEIN_LAB_NODE, which the lab sets. Query parameters inject behaviour:
  ?status=503    answer with that status code
  ?delay=200ms   wait that long first (at most 1m)
  ?size=1024     pad the body to that many bytes (at most 16 MiB)
An HTTP/1.1 request to /upgrade with "Connection: Upgrade" and "Upgrade:
skein-echo" gets 101, then "<pod>:" and an echo of every byte (see
upgrade-client); a WebSocket to /ws gets "<pod>:<message>" for each message.
With --call URL, every request first makes a GET to URL (a downstream service,
through the mesh), copying the trace headers (traceparent, tracestate, b3,
x-b3-*, x-request-id) as an app instrumented for propagation does, and puts
the downstream's JSON reply into its own as "downstream" (a failed call: 502).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			h := echoFromEnv()
			h.status, h.delay = status, delay
			if call != "" {
				u, err := url.Parse(call)
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					return fmt.Errorf("--call %q: want an http:// URL", call)
				}
				h.call, h.client = call, &http.Client{Timeout: 10 * time.Second}
			}
			return serveEchoWith(ctx, h, listen, verbose, func(addr net.Addr) {
				fmt.Fprintf(cmd.ErrOrStderr(), "echo: serving HTTP/1.1 and h2c on %s\n", addr)
			})
		},
	}
	cmd.Flags().StringVar(&listen, "listen", ":8080", "address to listen on")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "log every request to stderr")
	cmd.Flags().IntVar(&status, "status", 0, "answer every request with this status unless it asks for another (a failing pod)")
	cmd.Flags().StringVar(&call, "call", "", "call this URL (a downstream service) for every request, propagating its trace headers, and include the reply as \"downstream\"")
	cmd.Flags().DurationVar(&delay, "delay", 0, "wait this long before every answer unless the request asks otherwise (a slow pod)")
	return cmd
}

func echoFromEnv() echoHandler {
	h := echoHandler{pod: os.Getenv("SKEIN_LAB_POD"), namespace: os.Getenv("SKEIN_LAB_NAMESPACE"), node: os.Getenv("SKEIN_LAB_NODE")}
	if h.pod == "" {
		h.pod, _ = os.Hostname()
	}
	return h
}

// serveEcho serves until ctx ends, then shuts down gracefully (bounded).
func serveEcho(ctx context.Context, listen string, verbose bool, ready func(net.Addr)) error {
	return serveEchoWith(ctx, echoFromEnv(), listen, verbose, ready)
}

// serveEchoWith is serveEcho with a configured handler.
func serveEchoWith(ctx context.Context, h echoHandler, listen string, verbose bool, ready func(net.Addr)) error {
	var lc net.ListenConfig
	// Go listeners default to MPTCP, which a SOCKMAP refuses; the mesh may
	// put backend sockets into one.
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	handler := withLabRoutes(h)
	if verbose {
		next := handler
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(os.Stderr, "echo: %s %s %s %s\n", r.RemoteAddr, r.Proto, r.Method, r.URL)
			next.ServeHTTP(w, r)
		})
	}
	srv := newEchoServer(handler)
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func newEchoServer(h http.Handler) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           h,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
}
