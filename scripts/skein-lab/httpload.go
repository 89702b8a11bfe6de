package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// maxLoadBodyParse bounds how much of a body http-load reads to find the
// echo server's "pod"; the rest is discarded so the connection is reused.
const maxLoadBodyParse = 1 << 20

// httpLoadConfig is what one http-load run does.
type httpLoadConfig struct {
	// URL is the http:// URL every request goes to.
	URL string
	// Method is the request method; empty means GET.
	Method string
	// Requests is the number of requests, 1 to maxLoadCalls.
	Requests int
	// Concurrency is the number of requests in flight at once, 1 to
	// maxLoadConcurrency; it is also the most connections open at once.
	Concurrency int
	// HTTP2 sends cleartext HTTP/2 with prior knowledge instead of HTTP/1.1.
	HTTP2 bool
	// Header is sent with every request; a Host entry sets the Host.
	Header http.Header
	// RequestTimeout bounds each request, body included; 0 means only
	// Timeout bounds it.
	RequestTimeout time.Duration
	// Timeout bounds the whole run; requests not started by then are not made.
	Timeout time.Duration
	// Rate, if positive, starts requests on a fixed schedule of Rate per
	// second.
	Rate int
}

func (c httpLoadConfig) validate() error {
	var errs []error
	if u, err := url.Parse(c.URL); err != nil || u.Scheme != "http" || u.Host == "" {
		errs = append(errs, fmt.Errorf("--url %q: want http://host[:port]/path", c.URL))
	}
	errs = append(errs, checkLoadBounds("requests", c.Requests, c.Concurrency))
	if c.RequestTimeout < 0 {
		errs = append(errs, fmt.Errorf("--request-timeout %s: want 0 (none) or more", c.RequestTimeout))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout %s: want more than 0", c.Timeout))
	}
	return errors.Join(errs...)
}

// httpLoadSummary is http-load's JSON output.
type httpLoadSummary struct {
	// Requests is the number of requests made; fewer than asked if
	// --timeout ended the run.
	Requests int `json:"requests"`
	// ByStatus counts the responses by status code.
	ByStatus map[string]int `json:"byStatus"`
	// ByPod counts the responses, whatever their status, by the "pod" of the
	// echo server's JSON body, else its X-Skein-Lab-Pod header; responses
	// with neither are not counted.
	ByPod map[string]int `json:"byPod"`
	// ByProto counts the responses by protocol ("HTTP/1.1", "HTTP/2.0").
	ByProto map[string]int `json:"byProto"`
	// Errors counts the requests that got no complete response.
	Errors int `json:"errors"`
	// LatencyMs summarizes the latency of the requests that got a complete
	// response, body included.
	LatencyMs latencySummary `json:"latencyMs"`
	// Connections is the number of TCP connections the client established.
	Connections int64 `json:"connections"`
	// FirstError is the first failed request's error, for diagnosis.
	FirstError string `json:"firstError,omitempty"`
}

// runHTTPLoad sends cfg.Requests requests over keep-alive connections and
// summarizes the responses. It returns an error only when no connection to
// the target could be made.
func runHTTPLoad(ctx context.Context, cfg httpLoadConfig) (httpLoadSummary, error) {
	if err := cfg.validate(); err != nil {
		return httpLoadSummary{}, err
	}
	dialer := newCountingDialer(5 * time.Second)
	var protocols http.Protocols
	if cfg.HTTP2 {
		protocols.SetUnencryptedHTTP2(true)
	} else {
		protocols.SetHTTP1(true)
	}
	transport := &http.Transport{
		DialContext: dialer.DialContext,
		Protocols:   &protocols,
		// At most one connection per request in flight: a request that
		// finds none idle waits for one rather than dialing another.
		MaxConnsPerHost:     cfg.Concurrency,
		MaxIdleConns:        cfg.Concurrency,
		MaxIdleConnsPerHost: cfg.Concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		// No Proxy: the requests go where the test says, not to $HTTP_PROXY.
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{
		Transport: transport,
		// A redirect is a response to count, not to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	runCtx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	sum := httpLoadSummary{ByStatus: map[string]int{}, ByPod: map[string]int{}, ByProto: map[string]int{}}
	var (
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, cfg.Requests)
		wg        sync.WaitGroup
	)
	record := func(r loadResult) {
		mu.Lock()
		defer mu.Unlock()
		sum.Requests++
		if r.err != nil {
			sum.Errors++
			if sum.FirstError == "" {
				sum.FirstError = r.err.Error()
			}
			return
		}
		latencies = append(latencies, r.latency)
		sum.ByStatus[strconv.Itoa(r.status)]++
		sum.ByProto[r.proto]++
		if r.pod != "" {
			sum.ByPod[r.pod]++
		}
	}
	// The first request goes alone: with HTTP/2, requests that find no
	// connection each dial one, and the rest then share the first.
	record(loadRequest(runCtx, client, cfg))
	var next atomic.Int64
	next.Store(1)
	// With --rate, requests start on a fixed schedule shared by the
	// workers (a steady load across, say, an agent restart).
	var tick <-chan time.Time
	if cfg.Rate > 0 {
		t := time.NewTicker(time.Second / time.Duration(cfg.Rate))
		defer t.Stop()
		tick = t.C
	}
	for range min(cfg.Concurrency, cfg.Requests-1) {
		wg.Go(func() {
			for next.Add(1)-1 < int64(cfg.Requests) && runCtx.Err() == nil {
				if tick != nil {
					select {
					case <-tick:
					case <-runCtx.Done():
						return
					}
				}
				record(loadRequest(runCtx, client, cfg))
			}
		})
	}
	wg.Wait()
	sum.LatencyMs = summarizeLatency(latencies)
	sum.Connections = dialer.dials.Load()
	switch {
	case sum.Requests == 0:
		return sum, fmt.Errorf("request %s: no request made within --timeout %s", cfg.URL, cfg.Timeout)
	case sum.Connections == 0:
		return sum, fmt.Errorf("request %s: no connection could be made: %s", cfg.URL, sum.FirstError)
	}
	return sum, nil
}

type loadResult struct {
	status  int
	proto   string
	pod     string
	latency time.Duration
	err     error
}

// loadRequest makes one request and reads its whole body.
func loadRequest(ctx context.Context, client *http.Client, cfg httpLoadConfig) loadResult {
	if cfg.RequestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.RequestTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, cfg.Method, cfg.URL, nil)
	if err != nil {
		return loadResult{err: err}
	}
	for k, vs := range cfg.Header {
		if k == "Host" {
			req.Host = vs[0]
			continue
		}
		req.Header[k] = vs
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return loadResult{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxLoadBodyParse))
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	if err != nil {
		return loadResult{err: fmt.Errorf("read body of %s: %w", resp.Status, err)}
	}
	r := loadResult{status: resp.StatusCode, proto: resp.Proto, latency: time.Since(start)}
	var reply struct {
		Pod string `json:"pod"`
	}
	if json.Unmarshal(body, &reply) == nil && reply.Pod != "" {
		r.pod = reply.Pod
	} else {
		r.pod = resp.Header.Get("X-Skein-Lab-Pod")
	}
	return r
}

func newHTTPLoadCommand() *cobra.Command {
	cfg := httpLoadConfig{}
	var (
		headers []string
		output  string
	)
	cmd := &cobra.Command{
		Use:   "http-load --url http://HOST[:PORT]/PATH [--requests N] [--concurrency C] [--http2] [--header Name:value]... [-o text|json]",
		Short: "Send HTTP requests over keep-alive connections and count statuses and answering pods",
		Long: `http-load sends --requests requests, --concurrency at a time, over keep-alive
connections (net/http; --http2: cleartext HTTP/2 with prior knowledge, no
HTTP/1.1), reads every body, and prints a summary:
  {"requests":N,"byStatus":{"200":n},"byPod":{"pod":x},"byProto":{"HTTP/1.1":n},
   "errors":k,"latencyMs":{"p50":..,"p90":..,"p99":..,"max":..},
   "connections":c,"firstError":".."}
byPod counts responses of any status by the "pod" field of the echo server's
JSON body (else its X-Skein-Lab-Pod header); errors counts requests that got no
complete response. It exits 0 whatever the responses, and non-zero only for bad
flags or when no connection could be made.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutputFormat(output); err != nil {
				return err
			}
			h, err := parseHeaderFlags(headers)
			if err != nil {
				return err
			}
			cfg.Header = h
			if err := cfg.validate(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			sum, runErr := runHTTPLoad(ctx, cfg)
			if err := printHTTPLoadSummary(cmd.OutOrStdout(), output, sum); err != nil {
				return err
			}
			return runErr
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.URL, "url", "", "URL of every request, e.g. http://10.96.0.10/ (required)")
	f.StringVarP(&cfg.Method, "method", "X", http.MethodGet, "request method")
	f.IntVar(&cfg.Requests, "requests", 100, fmt.Sprintf("number of requests (at most %d)", maxLoadCalls))
	f.IntVar(&cfg.Concurrency, "concurrency", 1, fmt.Sprintf("requests in flight at once (at most %d)", maxLoadConcurrency))
	f.BoolVar(&cfg.HTTP2, "http2", false, "send cleartext HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1")
	f.StringArrayVar(&headers, "header", nil, "header Name:value of every request; Host:name sets the Host (repeatable)")
	f.DurationVar(&cfg.RequestTimeout, "request-timeout", 10*time.Second, "bound on each request (0: none)")
	f.DurationVar(&cfg.Timeout, "timeout", 60*time.Second, "bound on the whole run")
	f.IntVar(&cfg.Rate, "rate", 0, "start requests at this many per second, on a fixed schedule (0: as fast as the concurrency allows)")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func printHTTPLoadSummary(w io.Writer, format string, s httpLoadSummary) error {
	if format == "json" {
		return writeJSON(w, s)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "requests %d, errors %d, connections %d\n", s.Requests, s.Errors, s.Connections)
	fmt.Fprintf(&b, "by status: %s\n", formatCounts(s.ByStatus))
	fmt.Fprintf(&b, "by pod: %s\n", formatCounts(s.ByPod))
	fmt.Fprintf(&b, "by proto: %s\n", formatCounts(s.ByProto))
	fmt.Fprintf(&b, "latency ms: p50 %.3f, p90 %.3f, p99 %.3f, max %.3f\n", s.LatencyMs.P50, s.LatencyMs.P90, s.LatencyMs.P99, s.LatencyMs.Max)
	if s.FirstError != "" {
		fmt.Fprintf(&b, "first error: %s\n", s.FirstError)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
