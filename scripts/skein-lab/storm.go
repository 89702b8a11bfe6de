package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"

	"github.com/spf13/cobra"
)

// maxStorm bounds connect-storm.
const maxStorm = 200000

// connectStorm makes count connects to target one after the other, each
// closed at once (or refused), and reports how many it made: a burst of
// kernel events for testing that tracing keeps up or counts its losses.
func connectStorm(ctx context.Context, target string, count int, timeout time.Duration) (made, connected int) {
	d := net.Dialer{Timeout: timeout}
	for made < count && ctx.Err() == nil {
		c, err := d.DialContext(ctx, "tcp", target)
		made++
		if err == nil {
			connected++
			c.Close()
		}
	}
	return made, connected
}

func newConnectStormCommand() *cobra.Command {
	var (
		target  string
		count   int
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "connect-storm --target HOST:PORT --count N",
		Short: "Make N TCP connects as fast as possible, closing each (bounded), and print how many were made",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if count < 1 || count > maxStorm {
				return fmt.Errorf("--count %d: want 1 to %d", count, maxStorm)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			made, connected := connectStorm(ctx, target, count, time.Second)
			return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]int{"connects": made, "connected": connected})
		},
	}
	cmd.Flags().StringVar(&target, "target", "", "address to connect to (required)")
	cmd.Flags().IntVar(&count, "count", 1000, fmt.Sprintf("connects to make (at most %d)", maxStorm))
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "bound on the whole run")
	_ = cmd.MarkFlagRequired("target")
	return cmd
}
