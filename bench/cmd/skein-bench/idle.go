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
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/bench"
)

// idleResult is what holding many idle keep-alive connections cost the
// watched processes.
type idleResult struct {
	Wanted      int     `json:"wanted"`
	Opened      int     `json:"opened"`
	Errors      int     `json:"errors"`
	FirstError  string  `json:"firstError,omitempty"`
	OpenSeconds float64 `json:"openSeconds"`
	RSSBefore   int64   `json:"rssBeforeBytes"`
	RSSAfter    int64   `json:"rssAfterBytes"`
	AnonBefore  int64   `json:"anonRssBeforeBytes"`
	AnonAfter   int64   `json:"anonRssAfterBytes"`
	PeakAfter   int64   `json:"peakRssAfterBytes"`
	// PerConn is (RSSAfter-RSSBefore)/Opened.
	PerConn float64 `json:"bytesPerConn"`
}

// newIdleCommand opens --conns HTTP/1.1 keep-alive connections (one request
// on each, so that the proxy has set each up completely), holds them idle,
// and reports the RSS of the watched processes before and after.
func newIdleCommand() *cobra.Command {
	var target string
	var conns, parallel int
	var settle, timeout time.Duration
	var pids []int
	cmd := &cobra.Command{
		Use:   "idle",
		Short: "Hold many idle keep-alive connections and report what they cost the watched processes in memory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if conns < 1 || conns > maxLoadConns || parallel < 1 || parallel > 1024 || len(pids) == 0 {
				return fmt.Errorf("--conns 1 to %d, --parallel 1 to 1024, and at least one --watch-pid", maxLoadConns)
			}
			u, err := url.Parse(target)
			if err != nil || u.Scheme != "http" {
				return fmt.Errorf("--target %q: want http://host:port/path", target)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			r, err := holdIdle(ctx, u, conns, parallel, settle, pids)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), r)
		},
	}
	f := cmd.Flags()
	f.StringVar(&target, "target", "", "URL to open the connections to")
	f.IntVar(&conns, "conns", 10000, "connections to open")
	f.IntVar(&parallel, "parallel", 64, "connections being opened at once")
	f.DurationVar(&settle, "settle", 2*time.Second, "time to let the watched processes settle before reading their RSS")
	f.DurationVar(&timeout, "timeout", 2*time.Minute, "bound on the whole run")
	f.IntSliceVar(&pids, "watch-pid", nil, "pid whose RSS to read (repeatable)")
	return cmd
}

func holdIdle(ctx context.Context, u *url.URL, n, parallel int, settle time.Duration, pids []int) (*idleResult, error) {
	r := &idleResult{Wanted: n}
	before, err := bench.SampleProcs(pids)
	if err != nil {
		return nil, err
	}
	r.RSSBefore, r.AnonBefore = before.RSS, before.Anon
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	req := []byte("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\n\r\n")
	var mu sync.Mutex
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	start := time.Now()
	for range n {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := openOne(ctx, addr, req)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.Errors++
				if r.FirstError == "" {
					r.FirstError = err.Error()
				}
				return
			}
			open = append(open, c)
		})
	}
	wg.Wait()
	r.OpenSeconds = time.Since(start).Seconds()
	r.Opened = len(open)
	select {
	case <-time.After(settle):
	case <-ctx.Done():
	}
	after, err := bench.SampleProcs(pids)
	if err != nil {
		return nil, err
	}
	r.RSSAfter, r.PeakAfter, r.AnonAfter = after.RSS, after.Peak, after.Anon
	if r.Opened > 0 {
		r.PerConn = float64(r.RSSAfter-r.RSSBefore) / float64(r.Opened)
	}
	return r, nil
}

func openOne(ctx context.Context, addr string, req []byte) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = errors.New(resp.Status)
		}
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
