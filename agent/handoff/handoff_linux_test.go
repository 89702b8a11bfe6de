//go:build linux

package handoff

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTakeNoPeer(t *testing.T) {
	_, err := Take(context.Background(), filepath.Join(t.TempDir(), "handoff.sock"))
	require.ErrorIs(t, err, ErrNoPeer)
}

func TestHandoffKeepsTheSocketOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "handoff.sock")
	old, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	addr := old.Addr().String()

	offer, err := NewOffer(path, map[string]net.Listener{"outbound": old}, false)
	require.NoError(t, err)
	_, err = NewOffer(path, map[string]net.Listener{"outbound": old}, false)
	require.Error(t, err, "a second agent cannot take over a live offer")

	waited := make(chan error, 1)
	go func() { waited <- offer.Wait(context.Background()) }()

	// A client connects before the handoff: it waits in the backlog.
	early, err := net.Dial("tcp4", addr)
	require.NoError(t, err)
	defer early.Close()

	taken, err := Take(context.Background(), path)
	require.NoError(t, err)
	ln := taken.Listeners["outbound"]
	require.NotNil(t, ln)
	require.Equal(t, addr, ln.Addr().String(), "the same socket")

	// The old agent stops accepting: its copy closes, the socket lives on.
	require.NoError(t, taken.Ack())
	require.NoError(t, <-waited)
	require.NoError(t, offer.Close())
	require.NoError(t, old.Close())

	late, err := net.Dial("tcp4", addr)
	require.NoError(t, err, "connects are never refused")
	defer late.Close()
	for _, c := range []net.Conn{early, late} {
		acc, err := ln.Accept()
		require.NoError(t, err, "the connection from the backlog is not lost")
		go func() { io.Copy(acc, acc); acc.Close() }()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		_, err = c.Write([]byte("x"))
		require.NoError(t, err)
		b := make([]byte, 1)
		_, err = io.ReadFull(c, b)
		require.NoError(t, err)
	}
	ln.Close()
}

func TestHandoffAbortKeepsOldServing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "handoff.sock")
	old, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer old.Close()
	offer, err := NewOffer(path, map[string]net.Listener{"outbound": old}, false)
	require.NoError(t, err)
	defer offer.Close()
	ctx, cancel := context.WithCancel(context.Background())
	waited := make(chan error, 1)
	go func() { waited <- offer.Wait(ctx) }()

	taken, err := Take(context.Background(), path)
	require.NoError(t, err)
	taken.Abort() // the successor failed to start
	select {
	case err := <-waited:
		t.Fatalf("the old agent must keep offering after an aborted handoff, got %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	// A second successor succeeds.
	taken, err = Take(context.Background(), path)
	require.NoError(t, err)
	require.NoError(t, taken.Ack())
	require.NoError(t, <-waited)
	cancel()
	for _, l := range taken.Listeners {
		l.Close()
	}
}
