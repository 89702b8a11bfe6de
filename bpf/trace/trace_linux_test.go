//go:build linux

package trace

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/stretchr/testify/require"

	"github.com/skeinmesh/skein/bpf/capture"
	"github.com/skeinmesh/skein/internal/testenv"
)

func cgroup2(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	require.NoError(t, err)
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" {
				return fields[4]
			}
		}
	}
	t.Skip("no cgroup2")
	return ""
}

func TestPrivilegedEventsAndLoss(t *testing.T) {
	testenv.RequirePrivileged(t)
	mount := cgroup2(t)
	root, err := os.MkdirTemp(mount, "skein-trace-test-")
	require.NoError(t, err)
	t.Cleanup(func() { os.Remove(root) })
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(root, &st))

	m, err := NewMaps()
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	d, err := capture.New(capture.Config{CgroupPath: root, Events: m.Events(), TraceConfig: m.Config(), TraceLost: m.Lost()})
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	require.NoError(t, d.Configure(capture.Settings{Proxy4: netip.MustParseAddr("127.0.0.1"), ProxyPort: 1}))
	require.NoError(t, d.Sync(capture.State{Members: map[uint64]capture.MemberFlags{st.Ino: capture.MemberMeshed}}))

	// This process joins the "pod" while it dials.
	require.NoError(t, os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(fmt.Sprint(os.Getpid())), 0))
	t.Cleanup(func() { _ = os.WriteFile(filepath.Join(mount, "cgroup.procs"), []byte(fmt.Sprint(os.Getpid())), 0) })
	dial := func(n int) {
		for i := 0; i < n; i++ {
			c, err := net.DialTimeout("tcp4", "127.0.0.1:9", 100*time.Millisecond) // loopback: a bypass verdict
			if err == nil {
				c.Close()
			}
		}
	}

	r, err := m.NewReader()
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })

	t.Run("filtered out in the kernel when the kind is off", func(t *testing.T) {
		require.NoError(t, m.SetFilter(1<<KindStrictDrop, 0))
		dial(3)
		r.SetDeadline(time.Now().Add(100 * time.Millisecond))
		_, err := r.Read()
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	})

	t.Run("capture decisions are decoded", func(t *testing.T) {
		require.NoError(t, m.SetFilter(1<<KindCapture, st.Ino))
		dial(1)
		r.SetDeadline(time.Now().Add(2 * time.Second))
		rec, err := r.Read()
		require.NoError(t, err)
		ev, err := Decode(rec.RawSample)
		require.NoError(t, err)
		require.Equal(t, KindCapture, ev.Kind)
		require.Equal(t, st.Ino, ev.CgroupID)
		require.Equal(t, uint8(capture.VerdictLoopback), ev.Reason)
		require.Equal(t, netip.MustParseAddrPort("127.0.0.1:9"), ev.Orig)
	})

	t.Run("a full ring counts every lost event", func(t *testing.T) {
		before, err := m.LostCount()
		require.NoError(t, err)
		const n = 20000 // the 1 MiB ring holds about 13,000 events
		dial(n)
		read := 0
		for {
			r.SetDeadline(time.Now().Add(200 * time.Millisecond))
			if _, err := r.Read(); err != nil {
				require.True(t, errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ringbuf.ErrClosed), "%v", err)
				break
			}
			read++
		}
		after, err := m.LostCount()
		require.NoError(t, err)
		lost := int(after - before)
		require.Positive(t, lost)
		require.Equal(t, n, read+lost, "every event is either read or counted as lost")
	})
	require.NoError(t, m.SetFilter(0, 0))
}

func TestDecodeShort(t *testing.T) {
	_, err := Decode(make([]byte, 10))
	require.ErrorIs(t, err, ErrShort)
}

func TestParseKind(t *testing.T) {
	k, err := ParseKind("strict_drop")
	require.NoError(t, err)
	require.Equal(t, KindStrictDrop, k)
	_, err = ParseKind("nope")
	require.Error(t, err)
	require.Equal(t, "retransmit", KindRetransmit.String())
}
