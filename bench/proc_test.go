package bench

import (
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and a ')' must not shift the fields.
	line := "1234 (a b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 123 456 789\n"
	cpu, err := parseStatCPU([]byte(line))
	require.NoError(t, err)
	require.InDelta(t, 3.0, cpu, 1e-9, "utime 250 + stime 50 ticks at 100 Hz")
	_, err = parseStatCPU([]byte("1 (x) S 1 2"))
	require.Error(t, err)
}

func TestParseStatusMemory(t *testing.T) {
	m, err := parseStatusMemory([]byte("Name:\tx\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\nRssAnon:\t  512 kB\nThreads:\t1\n"))
	require.NoError(t, err)
	require.Equal(t, MemInfo{RSS: 1024 << 10, Peak: 2048 << 10, Anon: 512 << 10}, m)
	_, err = parseStatusMemory([]byte("Name:\tkthreadd\n"))
	require.Error(t, err)
}

func TestSampleSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc: Linux only")
	}
	s, err := SampleProcs([]int{os.Getpid()})
	require.NoError(t, err)
	require.Positive(t, s.RSS)
	require.GreaterOrEqual(t, s.Peak, s.RSS)
}

func TestParseSchedstat(t *testing.T) {
	run, wait, err := parseSchedstat([]byte("1500000000 250000000 42\n"))
	require.NoError(t, err)
	require.Equal(t, 1500*time.Millisecond, run)
	require.Equal(t, 250*time.Millisecond, wait)
	_, _, err = parseSchedstat([]byte("12"))
	require.Error(t, err)
}

func TestParseCPUBusy(t *testing.T) {
	stat := "cpu  1 2 3 4 5 6 7 8 0 0\ncpu0 10 0 10 500 5 0 0 0 0 0\ncpu1 100 1 50 900 40 2 3 4 0 0\n"
	busy, err := parseCPUBusy([]byte(stat), 1)
	require.NoError(t, err)
	require.Equal(t, 1600*time.Millisecond, busy, "user+nice+system+irq+softirq+steal = 160 ticks; idle and iowait left out")
	_, err = parseCPUBusy([]byte(stat), 7)
	require.Error(t, err)
}
