package l7proxy

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Detected
		done bool
	}{
		{"empty", "", DetectedTCP, false},
		{"get", "GET / HTTP/1.1\r\n", DetectedHTTP1, true},
		{"options", "OPTIONS * HTTP/1.1", DetectedHTTP1, true},
		{"partial method", "POS", DetectedTCP, false},
		{"method without space", "GETX", DetectedTCP, true},
		{"lowercase is not http", "get / HTTP/1.1", DetectedTCP, true},
		{"h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", DetectedHTTP2, true},
		{"partial h2 preface", "PRI * HTTP/2", DetectedTCP, false},
		{"tls", "\x16\x03\x01\x02\x00", DetectedTCP, true},
		{"binary", "\x00\x01\x02", DetectedTCP, true},
		{"redis", "*1\r\n$4\r\nPING\r\n", DetectedTCP, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, done := classify([]byte(tt.in))
			require.Equal(t, tt.done, done)
			if done {
				require.Equal(t, tt.want, d)
			}
		})
	}
}

func TestSniff(t *testing.T) {
	tests := []struct {
		name   string
		writes []string // written with pauses in between
		close  bool
		want   Detected
	}{
		{"http1 at once", []string{"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"}, false, DetectedHTTP1},
		{"http1 byte by byte", []string{"G", "E", "T", " /"}, false, DetectedHTTP1},
		{"h2 in pieces", []string{"PRI * HTTP/2.0\r\n", "\r\nSM\r\n\r\n"}, false, DetectedHTTP2},
		{"silent client times out to tcp", nil, false, DetectedTCP},
		{"client closes early", []string{"GE"}, true, DetectedTCP},
		{"tls", []string{"\x16\x03\x01"}, false, DetectedTCP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			all := ""
			go func() {
				for _, w := range tt.writes {
					all += w
					b.Write([]byte(w))
					time.Sleep(5 * time.Millisecond)
				}
				if tt.close {
					b.Close()
				}
			}()
			d, c, err := sniff(a, 200*time.Millisecond)
			if !tt.close {
				require.NoError(t, err)
			}
			require.Equal(t, tt.want, d)
			if tt.close || len(tt.writes) == 0 {
				return
			}
			// Whatever was peeked is replayed.
			want := ""
			for _, w := range tt.writes {
				want += w
			}
			got := make([]byte, len(want))
			c.SetReadDeadline(time.Now().Add(time.Second))
			_, err = io.ReadFull(c, got)
			require.NoError(t, err)
			require.Equal(t, want, string(got))
			require.Nil(t, c.(*sniffConn).buf, "once replayed, the first bytes' buffer goes back to the pool")
		})
	}
}
