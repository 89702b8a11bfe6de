package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/net/http/httpguts"
)

// The upgrade echo: an HTTP/1.1 Upgrade to a protocol of our own, so that a
// test proves the proxy passes an upgraded connection through untouched,
// with no WebSocket framing involved.
const (
	upgradePath     = "/upgrade"
	upgradeProtocol = "skein-echo"
	// maxUpgradeLifetime bounds an upgraded connection, which otherwise
	// lives as long as the client keeps it open; longer than the soak.
	maxUpgradeLifetime = time.Hour
	// maxPodNameLen bounds the "<pod>:" prefix the client reads: a DNS
	// label is at most 63 bytes, a host name 253.
	maxPodNameLen = 253
)

// withLabRoutes hands the echo backend's upgrade paths (/upgrade, /ws) to
// their handlers when a request asks for that upgrade, and every other
// request to echo.
func withLabRoutes(echo echoHandler) http.Handler {
	up := upgradeEchoHandler{pod: echo.pod}
	ws := newWebSocketEcho(echo.pod)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == upgradePath && wantsUpgrade(r, upgradeProtocol):
			up.ServeHTTP(w, r)
		case r.URL.Path == webSocketPath && wantsUpgrade(r, "websocket"):
			ws.ServeHTTP(w, r)
		default:
			echo.ServeHTTP(w, r)
		}
	})
}

// wantsUpgrade reports whether r is an HTTP/1.1 request to upgrade to
// protocol (HTTP/2 has no Upgrade).
func wantsUpgrade(r *http.Request, protocol string) bool {
	return r.ProtoMajor == 1 &&
		httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade") &&
		httpguts.HeaderValuesContainsToken(r.Header["Upgrade"], protocol)
}

// upgradeEchoHandler answers an upgrade to skein-echo with 101 Switching
// Protocols, then sends "<pod>:" once and echoes every byte it receives
// until the client closes.
type upgradeEchoHandler struct {
	pod string
}

func (h upgradeEchoHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, fmt.Sprintf("upgrade to %s: %v", upgradeProtocol, err), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(maxUpgradeLifetime))
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\nX-Skein-Lab-Pod: %s\r\n\r\n%s:",
		upgradeProtocol, h.pod, h.pod)
	if err := brw.Flush(); err != nil {
		return
	}
	// Bytes the client sent right behind its request are in brw's buffer.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		if _, err := conn.Write(b); err != nil {
			return
		}
	}
	io.Copy(conn, conn)
}

// upgradeClientConfig is what one upgrade-client run does.
type upgradeClientConfig struct {
	// URL is http://host[:port]/path of the upgrade echo.
	URL string
	// Message is sent Rounds times, each echo read before the next send.
	Message string
	// Rounds is at least 1.
	Rounds int
	// Interval is the pause between rounds: a long-lived stream.
	Interval time.Duration
	// Header is sent with the upgrade request.
	Header http.Header
	// Timeout bounds the whole exchange.
	Timeout time.Duration
}

// upgradeResult is upgrade-client's JSON output.
type upgradeResult struct {
	// Status is the status code of the answer to the upgrade request: 101.
	Status int `json:"status"`
	// Pod is the pod name the server sent first.
	Pod string `json:"pod"`
	// Echo is everything echoed after "<pod>:", the message once per round.
	Echo string `json:"echo"`
}

// runUpgradeClient upgrades a raw TCP connection to skein-echo by hand and
// checks that the server echoes the message. Any failure is an error.
func runUpgradeClient(ctx context.Context, cfg upgradeClientConfig) (upgradeResult, error) {
	u, err := url.Parse(cfg.URL)
	switch {
	case err != nil:
		return upgradeResult{}, fmt.Errorf("--url %q: %w", cfg.URL, err)
	case u.Scheme != "http" || u.Host == "":
		return upgradeResult{}, fmt.Errorf("--url %q: want http://host[:port]/path", cfg.URL)
	case cfg.Message == "":
		return upgradeResult{}, errors.New("--message: want a non-empty message")
	case cfg.Rounds < 1:
		return upgradeResult{}, fmt.Errorf("--rounds %d: want 1 or more", cfg.Rounds)
	case cfg.Timeout <= 0:
		return upgradeResult{}, fmt.Errorf("--timeout %s: want more than 0", cfg.Timeout)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	conn, err := newTCPDialer(cfg.Timeout).DialContext(ctx, "tcp", addr)
	if err != nil {
		return upgradeResult{}, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	var req bytes.Buffer
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: %s\r\nUser-Agent: skein-lab\r\n", u.RequestURI(), u.Host, upgradeProtocol)
	for k, vs := range cfg.Header {
		for _, v := range vs {
			fmt.Fprintf(&req, "%s: %s\r\n", k, v)
		}
	}
	req.WriteString("\r\n")
	if _, err := conn.Write(req.Bytes()); err != nil {
		return upgradeResult{}, fmt.Errorf("send upgrade request to %s: %w", addr, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet, URL: u})
	if err != nil {
		return upgradeResult{}, fmt.Errorf("read answer to upgrade request: %w", err)
	}
	res := upgradeResult{Status: resp.StatusCode}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return res, fmt.Errorf("upgrade to %s: got %s, want 101 Switching Protocols: %q", upgradeProtocol, resp.Status, body)
	}
	if got := resp.Header.Get("Upgrade"); !strings.EqualFold(got, upgradeProtocol) {
		return res, fmt.Errorf("upgrade to %s: 101 with Upgrade %q", upgradeProtocol, got)
	}
	pod, err := readPodPrefix(br)
	if err != nil {
		return res, err
	}
	res.Pod = pod
	var echo strings.Builder
	buf := make([]byte, len(cfg.Message))
	for i := range cfg.Rounds {
		if i > 0 && cfg.Interval > 0 {
			time.Sleep(cfg.Interval)
		}
		if _, err := io.WriteString(conn, cfg.Message); err != nil {
			return res, fmt.Errorf("send message %d: %w", i, err)
		}
		if _, err := io.ReadFull(br, buf); err != nil {
			return res, fmt.Errorf("read echo of message %d: %w", i, err)
		}
		echo.Write(buf)
		res.Echo = echo.String()
		if string(buf) != cfg.Message {
			return res, fmt.Errorf("echo of message %d: got %q, want %q", i, buf, cfg.Message)
		}
	}
	return res, nil
}

// readPodPrefix reads the "<pod>:" the server sends first.
func readPodPrefix(br *bufio.Reader) (string, error) {
	var pod []byte
	for {
		b, err := br.ReadByte()
		if err != nil {
			return "", fmt.Errorf("read pod name after 101: %w", err)
		}
		if b == ':' {
			break
		}
		if len(pod) == maxPodNameLen {
			return "", fmt.Errorf("read pod name after 101: no ':' in the first %d bytes", maxPodNameLen)
		}
		pod = append(pod, b)
	}
	if len(pod) == 0 {
		return "", errors.New("read pod name after 101: empty")
	}
	return string(pod), nil
}

// parseHeaderFlags turns repeated --header "Name: value" flags into a header.
func parseHeaderFlags(pairs []string) (http.Header, error) {
	h := http.Header{}
	var errs []error
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, ":")
		v = strings.TrimSpace(v)
		if !ok || !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) {
			errs = append(errs, fmt.Errorf("--header %q: want Name:value", p))
			continue
		}
		h.Add(k, v)
	}
	return h, errors.Join(errs...)
}

func newUpgradeClientCommand() *cobra.Command {
	cfg := upgradeClientConfig{}
	var headers []string
	var output string
	cmd := &cobra.Command{
		Use:   "upgrade-client --url http://HOST[:PORT]/upgrade --message MSG [--rounds N] [--header Name:value]... [-o text|json]",
		Short: "Upgrade an HTTP/1.1 connection to skein-echo by hand and check the echo",
		Long: `upgrade-client writes an HTTP/1.1 request with "Connection: Upgrade" and
"Upgrade: skein-echo" on a raw TCP connection, reads the answer with
net/http.ReadResponse, wants 101 Switching Protocols, then reads the "<pod>:"
the echo server sends first and, --rounds times, sends --message and reads its
echo. It prints "<pod>:<echo>" (text) or {"status":101,"pod":"..","echo":".."}
(json), and exits non-zero on any failure, printing nothing on stdout.`,
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
			res, err := runUpgradeClient(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return printEchoResult(cmd.OutOrStdout(), output, res)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.URL, "url", "", "URL of the upgrade echo, e.g. http://10.96.0.10/upgrade (required)")
	f.StringVar(&cfg.Message, "message", "", "message to send (required)")
	f.IntVar(&cfg.Rounds, "rounds", 1, "send the message this many times on the one connection")
	f.DurationVar(&cfg.Interval, "interval", 0, "pause between rounds, to hold a long-lived stream open (bounded by --timeout)")
	f.StringArrayVar(&headers, "header", nil, "header Name:value of the upgrade request (repeatable)")
	f.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "bound on the whole exchange")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func printEchoResult(w io.Writer, format string, res upgradeResult) error {
	if format == "json" {
		return json.NewEncoder(w).Encode(res)
	}
	_, err := fmt.Fprintf(w, "%s:%s\n", res.Pod, res.Echo)
	return err
}
