package l7proxy

import (
	"bufio"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// streamBackend answers with a first part, flushed, then holds the
// response open until release is closed, then sends the last part. length
// says whether the response announces its Content-Length.
func streamBackend(tb testing.TB, contentType string, length bool, release <-chan struct{}) netip.AddrPort {
	tb.Helper()
	const first, last = "data: first\n\n", "data: last\n\n"
	return startBackend(tb, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		if length {
			w.Header().Set("Content-Length", strconv.Itoa(len(first)+len(last)))
		}
		_, _ = io.WriteString(w, first)
		_ = http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, last)
	}))
}

// TestStreamedResponsesAreNotHeldBack checks that the parts of a streamed
// response reach the client as the upstream sends them, on the same node
// and across the tunnel, while responses with a length are buffered.
func TestStreamedResponsesAreNotHeldBack(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		length      bool
	}{
		{"server-sent events", "text/event-stream", false},
		{"a chunked body without a length", "application/octet-stream", false},
		{"a gRPC body, even with a length", "application/grpc", true},
	}
	for _, path := range []string{"same node", "across nodes"} {
		for _, tt := range tests {
			t.Run(path+": "+tt.name, func(t *testing.T) {
				release := make(chan struct{})
				backend := streamBackend(t, tt.contentType, tt.length, release)
				var c *http.Client
				var vip netip.AddrPort
				if path == "same node" {
					f := startProxy(t, Config{})
					vip = netip.MustParseAddrPort("10.96.0.10:80")
					f.proxy.Update(&Table{Services: map[netip.AddrPort]*Service{vip: {
						Namespace: "shop", Name: "events", Port: 80, Protocol: ProtocolHTTP, Endpoints: []*Endpoint{{Addr: backend}},
					}}})
					c = f.client(t, vip, nil)
				} else {
					np := startNodePair(t, backend, ProtocolHTTP)
					vip, c = np.vip, np.a.client(t, np.vip, np.src)
				}
				resp, err := c.Get("http://" + vip.String() + "/events")
				require.NoError(t, err)
				defer resp.Body.Close()
				require.Equal(t, http.StatusOK, resp.StatusCode)
				require.Equal(t, tt.contentType, resp.Header.Get("Content-Type"))

				lines := make(chan string, 4)
				go func() {
					defer close(lines)
					s := bufio.NewScanner(resp.Body)
					for s.Scan() {
						if s.Text() != "" {
							lines <- s.Text()
						}
					}
				}()
				select {
				case l := <-lines:
					require.Equal(t, "data: first", l)
				case <-time.After(3 * time.Second):
					t.Fatal("the first part did not arrive while the upstream held the response open")
				}
				close(release)
				var rest []string
				for l := range lines {
					rest = append(rest, l)
				}
				require.Equal(t, []string{"data: last"}, rest)
			})
		}
	}
}

// TestShortResponseLeavesInOneWrite checks that the proxy does not flush a
// response with a length part by part: header and body leave together.
func TestShortResponseLeavesInOneWrite(t *testing.T) {
	backend := startBackend(t, kbHandler())
	f := startProxy(t, Config{})
	vip := netip.MustParseAddrPort("10.96.0.10:80")
	f.proxy.Update(&Table{Services: map[netip.AddrPort]*Service{vip: {
		Namespace: "shop", Name: "web", Port: 80, Protocol: ProtocolHTTP, Endpoints: []*Endpoint{{Addr: backend}},
	}}})
	c := f.client(t, vip, nil)
	get := func() {
		resp, err := c.Get("http://" + vip.String() + "/")
		require.NoError(t, err)
		n, err := drain(resp)
		require.NoError(t, err)
		require.Equal(t, int64(len(kbBody)), n)
	}
	get()
	before := f.writes.Load()
	const n = 20
	for i := 0; i < n; i++ {
		get()
	}
	require.Equal(t, int64(n), f.writes.Load()-before, "one write per response")
}
