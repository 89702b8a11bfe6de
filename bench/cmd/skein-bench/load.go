package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/skeinmesh/skein/bench"
)

// Bounds of one load run.
const (
	maxLoadRequests = 2_000_000
	maxLoadConns    = 20_000
	maxLoadDuration = 5 * time.Minute
	// streamsPerConn is how many requests an HTTP/2 or gRPC connection
	// may carry at once.
	streamsPerConn = 4
)

// loadConfig is one load run.
type loadConfig struct {
	// Target is a URL for h1 and h2c, host:port for grpc.
	Target string
	// Proto is h1, h2c or grpc.
	Proto string
	// Rate is requests per second on a fixed schedule; 0: as fast as the
	// connections go (closed loop, for throughput).
	Rate int
	// Conns is the number of connections (h1: also the requests in
	// flight at most; h2c and grpc: streamsPerConn each).
	Conns int
	// NewConn opens a new connection for every request (h1 only).
	NewConn bool
	// Warmup runs the same load first without recording it.
	Warmup, Duration time.Duration
	// MaxRequests bounds the run whatever the rate and duration.
	MaxRequests int
	// Size is the response size gRPC asks for (HTTP servers answer with
	// their own).
	Size int
	// Timeout bounds each request.
	Timeout time.Duration
	// WatchPids are processes (the proxies) whose CPU time and peak RSS
	// over the measured window are reported.
	WatchPids []int
}

func (c loadConfig) validate() error {
	var errs []error
	switch c.Proto {
	case "h1", "h2c", "grpc":
	default:
		errs = append(errs, fmt.Errorf("--proto %q: want h1, h2c or grpc", c.Proto))
	}
	if c.NewConn && c.Proto != "h1" {
		errs = append(errs, errors.New("--new-conn: only with --proto h1"))
	}
	if c.Rate < 0 || c.Rate > 1_000_000 {
		errs = append(errs, fmt.Errorf("--rate %d: want 0 (max) to 1000000", c.Rate))
	}
	if c.Conns < 1 || c.Conns > maxLoadConns {
		errs = append(errs, fmt.Errorf("--conns %d: want 1 to %d", c.Conns, maxLoadConns))
	}
	if c.Duration <= 0 || c.Warmup < 0 || c.Warmup+c.Duration > maxLoadDuration {
		errs = append(errs, fmt.Errorf("--duration %s, --warmup %s: want a positive duration, both together at most %s", c.Duration, c.Warmup, maxLoadDuration))
	}
	if c.MaxRequests < 1 || c.MaxRequests > maxLoadRequests {
		errs = append(errs, fmt.Errorf("--max-requests %d: want 1 to %d", c.MaxRequests, maxLoadRequests))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("--timeout: want a positive duration"))
	}
	return errors.Join(errs...)
}

// loadResult is what one load run measured (JSON, read by the harness).
type loadResult struct {
	Proto   string  `json:"proto"`
	Mode    string  `json:"mode"` // fixed, max, newconn
	Rate    int     `json:"rate"`
	Conns   int     `json:"conns"`
	Seconds float64 `json:"seconds"` // the measured window
	// Requests are the requests of the measured window that succeeded.
	Requests   int     `json:"requests"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"firstError,omitempty"`
	RPS        float64 `json:"rps"`
	// Latency is measured from each request's due time (what a user of a
	// fixed-rate client sees); Service from the moment it was sent.
	Latency bench.Summary `json:"latency"`
	Service bench.Summary `json:"service"`
	// Proc* are the watched processes over the measured window: CPU
	// seconds, per 1,000 requests, peak RSS (sum of VmHWM, reset at the
	// window's start) and RSS at its end.
	ProcCPU      float64 `json:"procCpuSeconds,omitempty"`
	ProcCPUPer1k float64 `json:"procCpuPer1k,omitempty"`
	ProcPeakRSS  int64   `json:"procPeakRssBytes,omitempty"`
	ProcRSS      int64   `json:"procRssBytes,omitempty"`
	ProcAnonRSS  int64   `json:"procAnonRssBytes,omitempty"`
	ProcError    string  `json:"procError,omitempty"`
}

func newLoadCommand() *cobra.Command {
	c := loadConfig{}
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Send HTTP/1.1, h2c or gRPC requests on a fixed schedule (or flat out) and print latency percentiles as JSON",
		Long: `load sends requests on a fixed-rate open-loop schedule: request i is due at
start + i/rate, and its latency is measured from that due time, so a stall is
charged to every request that was due during it (no coordinated omission).
--rate 0 runs a closed loop as fast as the connections go instead, for
throughput. Samples are kept exactly and sorted for the percentiles.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := c.validate(); err != nil {
				return err
			}
			// The dispatcher sleeps in a syscall on a thread of its own:
			// the workers need another P meanwhile, even on one CPU.
			runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), 2))
			ctx, cancel := context.WithTimeout(cmd.Context(), c.Warmup+c.Duration+c.Timeout+10*time.Second)
			defer cancel()
			r, err := runLoad(ctx, c)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), r)
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.Target, "target", "", "URL (h1, h2c) or host:port (grpc)")
	f.StringVar(&c.Proto, "proto", "h1", "h1, h2c or grpc")
	f.IntVar(&c.Rate, "rate", 1000, "requests per second on a fixed schedule; 0: closed loop, as fast as possible")
	f.IntVar(&c.Conns, "conns", 16, "connections")
	f.BoolVar(&c.NewConn, "new-conn", false, "a new connection for every request (h1)")
	f.DurationVar(&c.Warmup, "warmup", time.Second, "unrecorded load before the measured window")
	f.DurationVar(&c.Duration, "duration", 5*time.Second, "measured window")
	f.IntVar(&c.MaxRequests, "max-requests", 500_000, "stop after this many requests in all")
	f.IntVar(&c.Size, "size", 1024, "gRPC response size")
	f.DurationVar(&c.Timeout, "timeout", 2*time.Second, "bound on each request")
	f.IntSliceVar(&c.WatchPids, "watch-pid", nil, "pid whose CPU and peak RSS to report (repeatable)")
	return cmd
}

// doer sends one request and reads its whole answer.
type doer interface {
	do(ctx context.Context) error
}

func runLoad(ctx context.Context, c loadConfig) (*loadResult, error) {
	doers, closeAll, err := newDoers(c)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	mode := "fixed"
	switch {
	case c.NewConn:
		mode = "newconn"
	case c.Rate == 0:
		mode = "max"
	}
	workers := len(doers)
	total := c.MaxRequests
	measuredFrom := 0
	var sched bench.Schedule
	perLane := total
	if c.Rate > 0 {
		sched = bench.Schedule{Rate: c.Rate}
		total = min(total, sched.Count(c.Warmup+c.Duration))
		measuredFrom = sched.Count(c.Warmup)
		perLane = total - measuredFrom
	} else {
		perLane = min(perLane, 200_000)
	}
	rec := bench.NewRecorder(workers, perLane/workers+16)
	start := time.Now().Add(20 * time.Millisecond)
	windowStart := start.Add(c.Warmup)
	end := windowStart.Add(c.Duration)

	// Proc readings at the window's edges.
	var before bench.ProcSample
	var procErr error
	procDone := make(chan struct{})
	go func() {
		defer close(procDone)
		if len(c.WatchPids) == 0 {
			return
		}
		time.Sleep(time.Until(windowStart))
		for _, pid := range c.WatchPids {
			if err := bench.ResetPeak(pid); err != nil {
				procErr = err
			}
		}
		b, err := bench.SampleProcs(c.WatchPids)
		if err != nil {
			procErr = err
		}
		before = b
	}()

	// Fixed rate: one goroutine on a thread of its own releases each
	// request at its due time; a free worker takes it. When every worker is
	// busy, released requests wait in the channel, and that wait counts in
	// their latency. Closed loop: each worker sends as soon as it is free.
	var dispatch chan int
	if c.Rate > 0 {
		dispatch = make(chan int, total)
		go func() {
			defer close(dispatch)
			defer preciseThread()()
			for i := range total {
				sleepUntil(start.Add(sched.Due(i)))
				if ctx.Err() != nil {
					return
				}
				dispatch <- i
				// The woken worker is next on this P: let it send now
				// rather than when this thread next sleeps in a syscall.
				runtime.Gosched()
			}
		}()
	}
	var next atomic.Int64
	claim := func() (int, bool) {
		if dispatch != nil {
			i, ok := <-dispatch
			return i, ok
		}
		i := int(next.Add(1) - 1)
		return i, i < total && time.Now().Before(end)
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			lane, d := rec.Lane(w), doers[w]
			for {
				i, ok := claim()
				if !ok || ctx.Err() != nil {
					return
				}
				due := time.Now()
				if c.Rate > 0 {
					due = start.Add(sched.Due(i))
				}
				sent := time.Now()
				rctx, cancel := context.WithTimeout(ctx, c.Timeout)
				err := d.do(rctx)
				cancel()
				done := time.Now()
				measured := i >= measuredFrom
				if c.Rate == 0 {
					measured = sent.After(windowStart) && !sent.After(end)
				}
				if !measured {
					continue
				}
				if err != nil {
					lane.Fail(err)
					continue
				}
				lane.Record(due, sent, done)
			}
		})
	}
	wg.Wait()
	finished := time.Now()
	<-procDone
	latency, service, errs, first := rec.Merge()
	window := finished.Sub(windowStart)
	if c.Rate == 0 {
		window = min(window, c.Duration)
	}
	r := &loadResult{
		Proto: c.Proto, Mode: mode, Rate: c.Rate, Conns: c.Conns,
		Seconds:  window.Seconds(),
		Requests: len(latency),
		Errors:   errs,
		RPS:      float64(len(latency)) / window.Seconds(),
		Latency:  bench.Summarize(latency),
		Service:  bench.Summarize(service),
	}
	if first != nil {
		r.FirstError = first.Error()
	}
	if len(c.WatchPids) > 0 {
		after, err := bench.SampleProcs(c.WatchPids)
		if err != nil {
			procErr = err
		}
		if procErr != nil {
			r.ProcError = procErr.Error()
		} else {
			r.ProcCPU = after.CPU - before.CPU
			r.ProcPeakRSS = after.Peak
			r.ProcRSS = after.RSS
			r.ProcAnonRSS = after.Anon
			if n := r.Requests + r.Errors; n > 0 {
				r.ProcCPUPer1k = r.ProcCPU / float64(n) * 1000
			}
		}
	}
	return r, nil
}

func newDoers(c loadConfig) ([]doer, func(), error) {
	var doers []doer
	var closers []func()
	closeAll := func() {
		for _, f := range closers {
			f()
		}
	}
	switch c.Proto {
	case "h1":
		u, err := url.Parse(c.Target)
		if err != nil || u.Scheme != "http" || u.Host == "" {
			return nil, nil, fmt.Errorf("--target %q: want http://host[:port]/path", c.Target)
		}
		addr := u.Host
		if u.Port() == "" {
			addr = net.JoinHostPort(u.Hostname(), "80")
		}
		conn := ""
		if c.NewConn {
			conn = "Connection: close\r\n"
		}
		req := []byte("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: skein-bench\r\n" + conn + "\r\n")
		for range c.Conns {
			d := &h1Doer{addr: addr, req: req, newConn: c.NewConn}
			doers = append(doers, d)
			closers = append(closers, d.close)
		}
	case "h2c":
		if _, err := url.Parse(c.Target); err != nil {
			return nil, nil, fmt.Errorf("--target: %w", err)
		}
		for range c.Conns {
			var p http.Protocols
			p.SetUnencryptedHTTP2(true)
			tr := &http.Transport{Protocols: &p, DisableCompression: true, MaxConnsPerHost: 1,
				DialContext: (&net.Dialer{Timeout: c.Timeout}).DialContext}
			closers = append(closers, tr.CloseIdleConnections)
			d := &h2Doer{client: &http.Client{Transport: tr}, url: c.Target}
			for range streamsPerConn {
				doers = append(doers, d)
			}
		}
	case "grpc":
		for range c.Conns {
			cc, err := grpc.NewClient("passthrough:///"+c.Target, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("grpc client for %s: %w", c.Target, err)
			}
			closers = append(closers, func() { cc.Close() })
			d := &grpcDoer{client: testpb.NewTestServiceClient(cc), req: &testpb.SimpleRequest{ResponseSize: int32(c.Size)}, size: c.Size}
			for range streamsPerConn {
				doers = append(doers, d)
			}
		}
	}
	return doers, closeAll, nil
}

// h1Doer speaks HTTP/1.1 on one connection of its own: a pre-built
// request, the standard library's response parser.
type h1Doer struct {
	addr    string
	req     []byte
	newConn bool
	c       net.Conn
	br      *bufio.Reader
}

var errStatus = errors.New("unexpected status")

func (d *h1Doer) do(ctx context.Context) error {
	if d.c == nil {
		var dl net.Dialer
		c, err := dl.DialContext(ctx, "tcp", d.addr)
		if err != nil {
			return err
		}
		d.c = c
		if d.br == nil {
			d.br = bufio.NewReaderSize(c, 16<<10)
		} else {
			d.br.Reset(c)
		}
	}
	deadline, _ := ctx.Deadline()
	d.c.SetDeadline(deadline)
	err := func() error {
		if _, err := d.c.Write(d.req); err != nil {
			return err
		}
		resp, err := http.ReadResponse(d.br, nil)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%w %d", errStatus, resp.StatusCode)
		}
		if resp.Close || d.newConn {
			d.close()
		}
		return nil
	}()
	if err != nil {
		d.close()
	}
	return err
}

func (d *h1Doer) close() {
	if d.c != nil {
		d.c.Close()
		d.c = nil
	}
}

// h2Doer sends requests over one HTTP/2 cleartext connection, shared by
// streamsPerConn workers.
type h2Doer struct {
	client *http.Client
	url    string
}

func (d *h2Doer) do(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url, nil)
	if err != nil {
		return err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w %d", errStatus, resp.StatusCode)
	}
	return nil
}

// grpcDoer makes unary calls to grpc.testing.TestService/UnaryCall (the
// lab's grpc-server) over one ClientConn, shared by streamsPerConn workers.
type grpcDoer struct {
	client testpb.TestServiceClient
	req    *testpb.SimpleRequest
	size   int
}

func (d *grpcDoer) do(ctx context.Context) error {
	resp, err := d.client.UnaryCall(ctx, d.req)
	if err != nil {
		return err
	}
	if n := len(resp.GetPayload().GetBody()); n != d.size {
		return fmt.Errorf("payload of %d bytes, want %d", n, d.size)
	}
	return nil
}
