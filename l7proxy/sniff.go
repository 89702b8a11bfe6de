package l7proxy

import (
	"bytes"
	"errors"
	"net"
	"os"
	"sync"
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

// sniffBufSize is the size of the buffer that holds a connection's first
// bytes: one read of whatever the client sent first, usually its whole
// first request.
const sniffBufSize = 4096

// sniffBufs hold connections' first bytes from detection until they are
// read again, so an idle connection holds no sniffing buffer: the HTTP
// server reads through its own, and the TCP relay through its own.
var sniffBufs = sync.Pool{New: func() any { return new([sniffBufSize]byte) }}

// sniffConn is a connection whose first bytes were read to detect the
// protocol; reads replay them, then read the connection directly.
type sniffConn struct {
	net.Conn
	buf  *[sniffBufSize]byte // holds head; nil once replayed
	head []byte              // what is left to replay
}

func (c *sniffConn) Read(p []byte) (int, error) {
	if c.buf == nil {
		return c.Conn.Read(p)
	}
	n := copy(p, c.head)
	c.head = c.head[n:]
	if len(c.head) == 0 {
		c.release()
	}
	return n, nil
}

// release returns the buffer to the pool once nothing is left to replay.
func (c *sniffConn) release() {
	sniffBufs.Put(c.buf)
	c.buf, c.head = nil, nil
}

// CloseWrite half-closes the underlying TCP connection.
func (c *sniffConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// sniff reads the first bytes of c, waiting at most timeout for the client
// to speak, and returns the detected protocol and a connection that
// replays what was read. A client that says nothing in time (a
// server-first protocol on an unknown port) is treated as opaque TCP.
func sniff(c net.Conn, timeout time.Duration) (Detected, net.Conn, error) {
	sc := &sniffConn{Conn: c, buf: sniffBufs.Get().(*[sniffBufSize]byte)}
	n := 0
	// keep makes the n bytes read so far what sc replays.
	keep := func() {
		if sc.head = sc.buf[:n]; n == 0 {
			sc.release()
		}
	}
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		keep()
		return DetectedTCP, sc, err
	}
	defer c.SetReadDeadline(time.Time{}) //nolint:errcheck // best effort; the conn fails later if it matters
	for {
		// Whatever has arrived, at least one byte more each time; no
		// decision needs more than the HTTP/2 preface, far less than
		// the buffer.
		m, err := c.Read(sc.buf[n:])
		n += m
		if d, done := classify(sc.buf[:n]); done {
			keep()
			return d, sc, nil
		}
		if err != nil {
			keep()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return DetectedTCP, sc, nil
			}
			return DetectedTCP, sc, err
		}
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
