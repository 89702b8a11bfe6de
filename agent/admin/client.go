package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"
)

// DefaultSocket is where the agent serves the admin API.
const DefaultSocket = "/run/skein/admin.sock"

// ErrAgentNotRunning says that no agent answers on the socket.
var ErrAgentNotRunning = errors.New("no agent is running")

// Client talks to an agent's admin socket.
type Client struct {
	Socket string
	http   *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	return &Client{
		Socket: path,
		http: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		}},
	}
}

// Get fetches path (e.g. "/v1/status") into out.
func (c *Client) Get(ctx context.Context, path string, out any) error {
	resp, err := c.Do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

// Do sends a request and returns the response for a 2xx status; other
// statuses become errors carrying the agent's message.
func (c *Client) Do(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, body)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
			return nil, fmt.Errorf("%w: nothing listens on %s (is skein-agent running on this node? use --socket for another path)", ErrAgentNotRunning, c.Socket)
		case errors.Is(err, os.ErrPermission):
			return nil, fmt.Errorf("open %s: permission denied: the admin socket is root only, run agentctl as root", c.Socket)
		}
		return nil, fmt.Errorf("ask the agent on %s: %w", c.Socket, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("agent: %s", e.Error)
		}
		return nil, fmt.Errorf("agent answered %s: %s", resp.Status, b)
	}
	return resp, nil
}

// Timeout is the default bound of one admin call.
const Timeout = 10 * time.Second
