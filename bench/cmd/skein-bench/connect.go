package main

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/bench"
)

// connectResult is what a connect loop measured.
type connectResult struct {
	Addr        string  `json:"addr"`
	Conns       int     `json:"conns"`
	Errors      int     `json:"errors"`
	FirstError  string  `json:"firstError,omitempty"`
	Unverified  int     `json:"unverified"` // the listener did not recover the address dialed
	Seconds     float64 `json:"seconds"`
	ConnsPerSec float64 `json:"connsPerSec"`
	// Connect is the time connect(2) took; Exchange the whole connect,
	// one byte each way, close.
	Connect  bench.Summary `json:"connect"`
	Exchange bench.Summary `json:"exchange"`
}

// newConnectCommand is the client of the capture-cost benchmark: one
// connection after another, each connect, one byte out, one byte back,
// close. The listener answers '1' when it recovered the address the client
// dialed (the capture worked), '0' otherwise.
func newConnectCommand() *cobra.Command {
	var addr string
	var count int
	var duration time.Duration
	cmd := &cobra.Command{
		Use:   "connect",
		Short: "Open, use and close connections one after another; print connect latency and connections per second as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if count < 1 || count > 1_000_000 || duration <= 0 || duration > 5*time.Minute {
				return errors.New("--count: 1 to 1000000, --duration: up to 5m")
			}
			r := connectLoop(cmd.Context(), addr, count, duration)
			return printJSON(cmd.OutOrStdout(), r)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "", "host:port to connect to")
	cmd.Flags().IntVar(&count, "count", 5000, "connections at most")
	cmd.Flags().DurationVar(&duration, "duration", 3*time.Second, "time at most")
	return cmd
}

func connectLoop(ctx context.Context, addr string, count int, duration time.Duration) connectResult {
	r := connectResult{Addr: addr}
	var connect, exchange []time.Duration
	dialer := net.Dialer{Timeout: 2 * time.Second}
	dialer.SetMultipathTCP(false)
	start := time.Now()
	deadline := start.Add(duration)
	buf := []byte{'x'}
	for i := 0; i < count && time.Now().Before(deadline) && ctx.Err() == nil; i++ {
		t0 := time.Now()
		c, err := dialer.DialContext(ctx, "tcp", addr)
		t1 := time.Now()
		if err == nil {
			c.SetDeadline(t1.Add(2 * time.Second))
			if _, err = c.Write(buf); err == nil {
				var got [1]byte
				if _, err = c.Read(got[:]); err == nil && got[0] != '1' {
					r.Unverified++
				}
			}
			c.Close()
		}
		if err != nil {
			r.Errors++
			if r.FirstError == "" {
				r.FirstError = err.Error()
			}
			continue
		}
		connect = append(connect, t1.Sub(t0))
		exchange = append(exchange, time.Since(t0))
	}
	el := time.Since(start)
	r.Conns = len(connect)
	r.Seconds = el.Seconds()
	r.ConnsPerSec = float64(r.Conns) / el.Seconds()
	r.Connect = bench.Summarize(connect)
	r.Exchange = bench.Summarize(exchange)
	return r
}
