package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
)

// maxBlackholeConns bounds the connections a black hole holds open; past
// it, new ones are closed at once.
const maxBlackholeConns = 10000

// blackhole accepts connections on ln, reads and discards what they send
// and never answers: an endpoint that hangs (a deadlocked process, a full
// disk), which only timeouts can get a caller away from. It returns when
// ctx ends, closing every connection.
func blackhole(ctx context.Context, ln net.Listener) {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	go func() {
		<-ctx.Done()
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		mu.Lock()
		if len(conns) >= maxBlackholeConns || ctx.Err() != nil {
			mu.Unlock()
			c.Close()
			continue
		}
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(io.Discard, c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
		}()
	}
	wg.Wait()
}

func newBlackholeCommand() *cobra.Command {
	var port int
	cmd := &cobra.Command{
		Use:   "blackhole [--port 8080]",
		Short: "Accept TCP connections and never answer: a hung endpoint",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			blackhole(ctx, ln)
			return nil
		},
	}
	cmd.Flags().IntVar(&port, "port", 8080, "TCP port to listen on")
	return cmd
}
