package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/net/websocket"
)

// The WebSocket echo, for tests that want a real WebSocket through the
// proxy rather than the bare upgrade of /upgrade.
const (
	webSocketPath = "/ws"
	// maxWebSocketMessage bounds a message the echo or the client reads.
	maxWebSocketMessage = 1 << 20
)

// newWebSocketEcho answers each WebSocket message with a text message
// "<pod>:<message>". It accepts any Origin: its clients are tests, not
// browsers.
func newWebSocketEcho(pod string) http.Handler {
	return websocket.Server{
		Handshake: func(*websocket.Config, *http.Request) error { return nil },
		Handler: func(ws *websocket.Conn) {
			ws.MaxPayloadBytes = maxWebSocketMessage
			ws.SetDeadline(time.Now().Add(maxUpgradeLifetime))
			for {
				var msg []byte
				if err := websocket.Message.Receive(ws, &msg); err != nil {
					return
				}
				if err := websocket.Message.Send(ws, pod+":"+string(msg)); err != nil {
					return
				}
			}
		},
	}
}

// runWebSocketClient sends cfg.Message cfg.Rounds times over one WebSocket
// and checks each answer is "<pod>:<message>" from the same pod.
func runWebSocketClient(ctx context.Context, cfg upgradeClientConfig) (upgradeResult, error) {
	u, err := url.Parse(cfg.URL)
	switch {
	case err != nil:
		return upgradeResult{}, fmt.Errorf("--url %q: %w", cfg.URL, err)
	case u.Scheme != "ws" || u.Host == "":
		return upgradeResult{}, fmt.Errorf("--url %q: want ws://host[:port]/path", cfg.URL)
	case cfg.Message == "":
		return upgradeResult{}, errors.New("--message: want a non-empty message")
	case cfg.Rounds < 1:
		return upgradeResult{}, fmt.Errorf("--rounds %d: want 1 or more", cfg.Rounds)
	case cfg.Timeout <= 0:
		return upgradeResult{}, fmt.Errorf("--timeout %s: want more than 0", cfg.Timeout)
	}
	wsCfg, err := websocket.NewConfig(cfg.URL, "http://"+u.Host)
	if err != nil {
		return upgradeResult{}, fmt.Errorf("--url %q: %w", cfg.URL, err)
	}
	wsCfg.Header = cfg.Header
	wsCfg.Dialer = newTCPDialer(cfg.Timeout)
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	ws, err := wsCfg.DialContext(ctx)
	if err != nil {
		return upgradeResult{}, fmt.Errorf("open WebSocket %s: %w", cfg.URL, err)
	}
	defer ws.Close()
	ws.MaxPayloadBytes = maxWebSocketMessage
	deadline, _ := ctx.Deadline()
	ws.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { ws.SetDeadline(time.Now()) })
	defer stop()

	res := upgradeResult{Status: http.StatusSwitchingProtocols}
	for i := range cfg.Rounds {
		if err := websocket.Message.Send(ws, cfg.Message); err != nil {
			return res, fmt.Errorf("send message %d: %w", i, err)
		}
		var reply string
		if err := websocket.Message.Receive(ws, &reply); err != nil {
			return res, fmt.Errorf("read echo of message %d: %w", i, err)
		}
		pod, echo, ok := strings.Cut(reply, ":")
		switch {
		case !ok || pod == "":
			return res, fmt.Errorf("echo of message %d: %q has no <pod>: prefix", i, reply)
		case res.Pod != "" && pod != res.Pod:
			return res, fmt.Errorf("echo of message %d: from pod %q, earlier ones from %q", i, pod, res.Pod)
		}
		res.Pod = pod
		res.Echo += echo
		if echo != cfg.Message {
			return res, fmt.Errorf("echo of message %d: got %q, want %q", i, echo, cfg.Message)
		}
	}
	return res, nil
}

func newWebSocketClientCommand() *cobra.Command {
	cfg := upgradeClientConfig{}
	var headers []string
	var output string
	cmd := &cobra.Command{
		Use:   "ws-client --url ws://HOST[:PORT]/ws --message MSG [--rounds N] [--header Name:value]... [-o text|json]",
		Short: "Open a WebSocket to the echo server's /ws and check the echo",
		Long: `ws-client opens a WebSocket (golang.org/x/net/websocket) and, --rounds times,
sends --message as a text message and reads the answer, which the echo server's
/ws sends as "<pod>:<message>". It prints "<pod>:<echo>" (text) or
{"status":101,"pod":"..","echo":".."} (json), and exits non-zero on any
failure, printing nothing on stdout.`,
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
			res, err := runWebSocketClient(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return printEchoResult(cmd.OutOrStdout(), output, res)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.URL, "url", "", "URL of the WebSocket echo, e.g. ws://10.96.0.10/ws (required)")
	f.StringVar(&cfg.Message, "message", "", "message to send (required)")
	f.IntVar(&cfg.Rounds, "rounds", 1, "send the message this many times on the one WebSocket")
	f.StringArrayVar(&headers, "header", nil, "header Name:value of the opening handshake (repeatable)")
	f.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "bound on the whole exchange")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
