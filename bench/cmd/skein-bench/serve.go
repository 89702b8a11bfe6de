package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// podHeader names the pod that answered (from SKEIN_LAB_POD, which the lab
// sets), so that a route change can be seen from the client.
const podHeader = "X-Pod"

// newServeCommand is the HTTP backend of the benchmarks: the leanest
// net/http server that answers every request with a fixed body, so that the
// backend costs the same in every topology and as little as possible.
func newServeCommand() *cobra.Command {
	var listen string
	var size int
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve HTTP/1.1 and h2c, answering every request with --size bytes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if size < 0 || size > 16<<20 {
				return fmt.Errorf("--size %d: want 0 to 16 MiB", size)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, listen, size)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", ":8080", "address to listen on")
	cmd.Flags().IntVar(&size, "size", 1024, "response body size in bytes")
	return cmd
}

func serve(ctx context.Context, listen string, size int) error {
	body := make([]byte, size)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	pod := os.Getenv("SKEIN_LAB_POD")
	length := strconv.Itoa(size)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd["Content-Type"] = []string{"application/octet-stream"}
		hd["Content-Length"] = []string{length}
		hd[podHeader] = []string{pod}
		w.WriteHeader(http.StatusOK)
		w.Write(body)
	})
	var lc net.ListenConfig
	lc.SetMultipathTCP(false) // a SOCKMAP refuses MPTCP sockets
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
