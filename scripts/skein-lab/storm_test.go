package main

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestConnectStorm(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	made, connected := connectStorm(context.Background(), ln.Addr().String(), 50, time.Second)
	require.Equal(t, 50, made)
	require.Equal(t, 50, connected)
	ln.Close()
	made, connected = connectStorm(context.Background(), ln.Addr().String(), 5, time.Second)
	require.Equal(t, 5, made)
	require.Zero(t, connected, "refused connects are counted as made, not connected")
}
