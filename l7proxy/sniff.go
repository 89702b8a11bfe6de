package l7proxy

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"time"
)

// Detected is what the first bytes of a connection say it carries.
type Detected int

// Detection outcomes.
const (
	DetectedTCP   Detected = iota // unknown bytes, TLS, or nothing in time: opaque TCP
	DetectedHTTP1                 // an HTTP/1.x request line
	DetectedHTTP2                 // the HTTP/2 connection preface (prior knowledge)
)

func (d Detected) String() string {
	switch d {
	case DetectedHTTP1:
		return "http/1.1"
	case DetectedHTTP2:
		return "http/2"
	}
	return "tcp"
}

// http2Preface is what an HTTP/2 client with prior knowledge sends first.
var http2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// methods are the request-line tokens that identify HTTP/1.x. Each is
// followed by a space; longest is 7 ("OPTIONS", "CONNECT") + 1.
var methods = [][]byte{
	[]byte("GET "), []byte("POST "), []byte("PUT "), []byte("DELETE "), []byte("HEAD "),
	[]byte("OPTIONS "), []byte("PATCH "), []byte("CONNECT "), []byte("TRACE "),
}

// classify decides from a prefix of a connection's first bytes. It returns
// done=false while the prefix is too short to tell.
func classify(b []byte) (d Detected, done bool) {
	if len(b) == 0 {
		return DetectedTCP, false
	}
	// TLS handshake record: opaque to the proxy.
	if b[0] == 0x16 {
		return DetectedTCP, true
	}
	if n := min(len(b), len(http2Preface)); bytes.Equal(b[:n], http2Preface[:n]) {
		if n == len(http2Preface) {
			return DetectedHTTP2, true
		}
		// "PRI " could also be an HTTP/1 method nobody uses; wait for more.
		return DetectedTCP, false
	}
	possible := false
	for _, m := range methods {
		n := min(len(b), len(m))
		if bytes.Equal(b[:n], m[:n]) {
			if n == len(m) {
				return DetectedHTTP1, true
			}
			possible = true
		}
	}
	if possible {
		return DetectedTCP, false
	}
	return DetectedTCP, true
}

// sniffConn is a connection whose first bytes were read to detect the
// protocol; reads replay them.
type sniffConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *sniffConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite half-closes the underlying TCP connection.
func (c *sniffConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// sniff reads up to the first bytes of c, waiting at most timeout for the
// client to speak, and returns the detected protocol and a connection that
// replays what was read. A client that says nothing in time (a server-first
// protocol on an unknown port) is treated as opaque TCP.
func sniff(c net.Conn, timeout time.Duration) (Detected, net.Conn, error) {
	br := bufio.NewReaderSize(c, 4096)
	sc := &sniffConn{Conn: c, r: br}
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return DetectedTCP, sc, err
	}
	defer c.SetReadDeadline(time.Time{}) //nolint:errcheck // best effort; the conn fails later if it matters
	want := 1
	for {
		b, err := br.Peek(want)
		d, done := classify(b)
		if done {
			return d, sc, nil
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return DetectedTCP, sc, nil
			}
			return DetectedTCP, sc, err
		}
		// Look at everything that has arrived, and wait for at least one
		// byte more; no decision needs more than the HTTP/2 preface.
		want = min(max(len(b)+1, br.Buffered()), len(http2Preface))
	}
}

// serverFirstPorts are well-known ports of protocols where the server speaks
// first: sniffing them would make every connection wait for the timeout.
var serverFirstPorts = map[uint16]bool{
	21: true, 22: true, 25: true, 110: true, 143: true, 465: true, 587: true, 993: true, 995: true,
	3306: true, 33060: true, // MySQL
	5222: true, // XMPP client
	2525: true, // SMTP alternate
}
