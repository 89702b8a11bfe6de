package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// serveRaw answers every TCP connection on a loopback port with handle until
// the test ends, and returns the port's address.
func serveRaw(t testing.TB, handle func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				handle(c, br)
			}()
		}
	}()
	return ln.Addr().String()
}

func closedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func TestUpgradeClient(t *testing.T) {
	echo := startEcho(t)
	notUpgrading := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "no upgrade here")
	}))
	t.Cleanup(notUpgrading.Close)
	switchesThenCloses := serveRaw(t, func(c net.Conn, _ *bufio.Reader) {
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: skein-echo\r\n\r\n")
	})
	echoesWrong := serveRaw(t, func(c net.Conn, br *bufio.Reader) {
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: skein-echo\r\n\r\npod-x:")
		buf := make([]byte, 5)
		if _, err := io.ReadFull(br, buf); err == nil {
			c.Write([]byte(strings.ToUpper(string(buf))))
		}
	})
	otherProtocol := serveRaw(t, func(c net.Conn, _ *bufio.Reader) {
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	})

	tests := []struct {
		name     string
		url      string
		message  string
		rounds   int
		want     upgradeResult
		wantErr  string
		wantCode int
	}{
		{name: "echo server upgrades", url: echo + "/upgrade", message: "hello", rounds: 1,
			want: upgradeResult{Status: 101, Pod: "product-v1", Echo: "hello"}},
		{name: "one connection, several rounds", url: echo + "/upgrade?x=1", message: "ping ", rounds: 3,
			want: upgradeResult{Status: 101, Pod: "product-v1", Echo: "ping ping ping "}},
		{name: "echo server does not upgrade other paths", url: echo + "/other", message: "hello", rounds: 1,
			wantErr: "got 200 OK, want 101", wantCode: 200},
		{name: "server that does not upgrade", url: notUpgrading.URL + "/upgrade", message: "hello", rounds: 1,
			wantErr: "got 200 OK, want 101", wantCode: 200},
		{name: "server that closes after 101", url: "http://" + switchesThenCloses + "/upgrade", message: "hello", rounds: 1,
			wantErr: "read pod name after 101", wantCode: 101},
		{name: "server that echoes wrong", url: "http://" + echoesWrong + "/upgrade", message: "hello", rounds: 1,
			wantErr: `got "HELLO", want "hello"`, wantCode: 101},
		{name: "server that upgrades to another protocol", url: "http://" + otherProtocol + "/upgrade", message: "hello", rounds: 1,
			wantErr: `101 with Upgrade "websocket"`, wantCode: 101},
		{name: "nothing listening", url: "http://" + closedPort(t) + "/upgrade", message: "hello", rounds: 1,
			wantErr: "dial"},
		{name: "not http", url: "https://127.0.0.1/upgrade", message: "hello", rounds: 1, wantErr: "want http://"},
		{name: "no message", url: echo + "/upgrade", rounds: 1, wantErr: "--message"},
		{name: "no rounds", url: echo + "/upgrade", message: "hello", wantErr: "--rounds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := runUpgradeClient(context.Background(), upgradeClientConfig{
				URL: tt.url, Message: tt.message, Rounds: tt.rounds, Timeout: 5 * time.Second,
			})
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.Equal(t, tt.wantCode, got.Status)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

// TestEchoUpgradePathWithoutUpgrade checks that /upgrade stays an ordinary
// echo path for requests that do not ask for the upgrade.
func TestEchoUpgradePathWithoutUpgrade(t *testing.T) {
	base := startEcho(t)
	var h2cProtocols http.Protocols
	h2cProtocols.SetUnencryptedHTTP2(true)
	h1Transport := &http.Transport{}
	h1 := &http.Client{Timeout: 5 * time.Second, Transport: h1Transport}
	t.Cleanup(h1Transport.CloseIdleConnections)
	h2cTransport := &http.Transport{Protocols: &h2cProtocols}
	h2c := &http.Client{Timeout: 5 * time.Second, Transport: h2cTransport}
	t.Cleanup(h2cTransport.CloseIdleConnections)
	tests := []struct {
		name   string
		client *http.Client
		hdr    []string
	}{
		{name: "http/1.1", client: h1},
		{name: "http/1.1, Upgrade without Connection: Upgrade", client: h1, hdr: []string{"Upgrade", "skein-echo"}},
		{name: "h2c", client: h2c},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, tt.client, base+"/upgrade", tt.hdr...)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			var r echoReply
			require.NoError(t, json.Unmarshal(body, &r))
			require.Equal(t, "/upgrade", r.Path)
		})
	}
}

func TestWebSocketClient(t *testing.T) {
	echo := "ws" + strings.TrimPrefix(startEcho(t), "http")
	tests := []struct {
		name    string
		url     string
		message string
		rounds  int
		want    upgradeResult
		wantErr string
	}{
		{name: "echo", url: echo + "/ws", message: "hello", rounds: 2,
			want: upgradeResult{Status: 101, Pod: "product-v1", Echo: "hellohello"}},
		{name: "message with the separator", url: echo + "/ws", message: "a:b", rounds: 1,
			want: upgradeResult{Status: 101, Pod: "product-v1", Echo: "a:b"}},
		{name: "path that does not upgrade", url: echo + "/nows", message: "hello", rounds: 1, wantErr: "open WebSocket"},
		{name: "nothing listening", url: "ws://" + closedPort(t) + "/ws", message: "hello", rounds: 1, wantErr: "open WebSocket"},
		{name: "not ws", url: "http://127.0.0.1/ws", message: "hello", rounds: 1, wantErr: "want ws://"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := runWebSocketClient(context.Background(), upgradeClientConfig{
				URL: tt.url, Message: tt.message, Rounds: tt.rounds, Timeout: 5 * time.Second,
			})
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}
