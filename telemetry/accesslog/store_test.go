package accesslog

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// clock is a settable clock for the store.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// entry returns a request entry numbered n, n milliseconds after t0.
func entry(n int) *Entry {
	return &Entry{
		Start: t0.Add(time.Duration(n) * time.Millisecond), DurationMS: 1.5, Protocol: "http", Reporter: "source",
		TraceID: fmt.Sprintf("%032x", n+1), SpanID: fmt.Sprintf("%016x", n+1), RequestID: "req-" + strconv.Itoa(n),
		SourceWorkload: "client", SourceNamespace: "shop", SourcePrincipal: "spiffe://cluster.local/ns/shop/sa/client", SourcePod: "client-7d9f",
		DestinationWorkload: "product", DestinationNamespace: "shop", DestinationPod: "product-v1", DestinationService: "product.shop.svc.cluster.local",
		Method: "GET", Authority: "product.shop", Path: "/items/" + strconv.Itoa(n), ResponseCode: 200, ResponseFlags: "-",
		BytesReceived: 0, BytesSent: 120, UpstreamHost: "10.244.1.11:8080", ConnectionSecurityPolicy: "none",
	}
}

// openStore opens a store in a temp dir (or dir) with the clock.
func openStore(t testing.TB, cfg StoreConfig, c *clock) *Store {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if c != nil {
		cfg.Now = c.Now
	}
	s, err := OpenStore(cfg, zap.NewNop())
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// dirSize sums the sizes of the files in dir, as they are on disk.
func dirSize(t testing.TB, dir string) (total int64, files int) {
	t.Helper()
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, de := range des {
		fi, err := de.Info()
		require.NoError(t, err)
		total += fi.Size()
		files++
	}
	return total, files
}

func write(t testing.TB, s *Store, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		require.NoError(t, s.Write([]*Entry{entry(i)}))
	}
	require.NoError(t, s.Flush())
}

func paths(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Path)
	}
	return out
}

func TestStoreRotationAndSizeCap(t *testing.T) {
	c := &clock{now: t0.Add(time.Minute)}
	s := openStore(t, StoreConfig{MaxBytes: 16 << 10, SegmentBytes: 2 << 10}, c)
	const n = 500 // about 250 KB of lines: many times the cap
	for i := 0; i < n; i++ {
		require.NoError(t, s.Write([]*Entry{entry(i)}))
		if i%50 == 0 {
			require.NoError(t, s.Flush())
			size, _ := dirSize(t, s.Dir())
			require.LessOrEqual(t, size, int64(16<<10), "on disk, after %d entries", i+1)
		}
	}
	require.NoError(t, s.Flush())
	size, files := dirSize(t, s.Dir())
	require.LessOrEqual(t, size, int64(16<<10))
	require.Greater(t, size, int64(12<<10), "the store is full, not emptied")
	require.GreaterOrEqual(t, files, 7, "segments of 2 KiB")
	held, segs := s.Size()
	require.Equal(t, size, held)
	require.Equal(t, files, segs)

	res, err := s.Query(Query{Limit: MaxQueryLimit})
	require.NoError(t, err)
	require.Zero(t, res.Corrupt)
	// What is left is the newest entries, without a gap: the oldest went.
	first, err := strconv.Atoi(strings.TrimPrefix(res.Entries[0].Path, "/items/"))
	require.NoError(t, err)
	require.Positive(t, first)
	for i, e := range res.Entries {
		require.Equal(t, "/items/"+strconv.Itoa(first+i), e.Path)
	}
	require.Equal(t, "/items/"+strconv.Itoa(n-1), res.Entries[len(res.Entries)-1].Path)
}

func TestStoreSegmentLimitOnTime(t *testing.T) {
	c := &clock{now: t0}
	s := openStore(t, StoreConfig{MaxBytes: 1 << 20, MaxAge: 16 * time.Hour}, c)
	write(t, s, 0, 3)
	_, segs := s.Size()
	require.Equal(t, 1, segs)
	c.now = c.now.Add(time.Hour) // MaxAge/16: the segment is closed
	write(t, s, 3, 4)
	_, segs = s.Size()
	require.Equal(t, 2, segs)
}

func TestStoreAgeCap(t *testing.T) {
	c := &clock{now: t0}
	s := openStore(t, StoreConfig{MaxBytes: 1 << 20, MaxAge: time.Hour}, c)
	write(t, s, 0, 10)
	// Segment times come from the disk (they must survive restarts).
	age := func(d time.Duration) {
		des, err := os.ReadDir(s.Dir())
		require.NoError(t, err)
		for _, de := range des {
			p := filepath.Join(s.Dir(), de.Name())
			require.NoError(t, os.Chtimes(p, t0.Add(d), t0.Add(d)))
		}
	}
	age(0)
	c.now = t0.Add(30 * time.Minute)
	write(t, s, 10, 20) // a second segment (MaxAge/16 passed)
	_, segs := s.Size()
	require.Equal(t, 2, segs)

	res, err := s.Query(Query{})
	require.NoError(t, err)
	require.Len(t, res.Entries, 20)

	c.now = t0.Add(61 * time.Minute)
	require.NoError(t, s.Flush())
	_, segs = s.Size()
	require.Equal(t, 1, segs, "the first segment is past the age cap and deleted")
	res, err = s.Query(Query{})
	require.NoError(t, err)
	require.Empty(t, res.Entries, "entries past the age cap are never answered")

	c.now = t0.Add(3 * time.Hour)
	require.NoError(t, s.Flush())
	size, files := dirSize(t, s.Dir())
	require.Zero(t, files, "the active segment expires too")
	require.Zero(t, size)
	e := entry(99)
	e.Start = c.now
	require.NoError(t, s.Write([]*Entry{e}))
	require.NoError(t, s.Flush())
	res, err = s.Query(Query{})
	require.NoError(t, err)
	require.Equal(t, []string{"/items/99"}, paths(res.Entries))
}

func TestStoreReopenAppends(t *testing.T) {
	dir := t.TempDir()
	c := &clock{now: t0.Add(time.Second)}
	s := openStore(t, StoreConfig{Dir: dir}, c)
	write(t, s, 0, 5)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close is idempotent")
	require.ErrorIs(t, s.Write([]*Entry{entry(5)}), errClosed)

	// The next agent.
	s2 := openStore(t, StoreConfig{Dir: dir}, c)
	write(t, s2, 5, 8)
	_, files := dirSize(t, dir)
	require.Equal(t, 1, files, "appended to the segment it found")
	res, err := s2.Query(Query{})
	require.NoError(t, err)
	require.Len(t, res.Entries, 8)
	require.Equal(t, "/items/0", res.Entries[0].Path)
	require.Equal(t, "/items/7", res.Entries[7].Path)
}

func TestStoreToleratesBrokenLines(t *testing.T) {
	dir := t.TempDir()
	c := &clock{now: t0.Add(time.Second)}
	s := openStore(t, StoreConfig{Dir: dir}, c)
	write(t, s, 0, 3)
	require.NoError(t, s.Close())
	seg := filepath.Join(dir, "0000000000000001.jsonl")
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	// A line that is not JSON, then one cut short by a crash.
	_, err = f.WriteString("not json\n" + `{"start_time":"2026-11-25T12:00:00Z","duration_ms":1,"pro`)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	s2 := openStore(t, StoreConfig{Dir: dir}, c)
	res, err := s2.Query(Query{})
	require.NoError(t, err)
	require.Equal(t, []string{"/items/0", "/items/1", "/items/2"}, paths(res.Entries))
	require.Equal(t, 1, res.Corrupt, "the complete bad line is counted; the cut one is skipped")

	write(t, s2, 3, 5)
	_, files := dirSize(t, dir)
	require.Equal(t, 2, files, "a segment cut short is not appended to: a new one begins")
	res, err = s2.Query(Query{})
	require.NoError(t, err)
	require.Len(t, res.Entries, 5)
}

func TestStoreQuery(t *testing.T) {
	c := &clock{now: t0.Add(time.Minute)}
	s := openStore(t, StoreConfig{}, c)
	var batch []*Entry
	for i := 0; i < 10; i++ {
		batch = append(batch, entry(i))
	}
	batch[3].ResponseCode = 503
	batch[3].ResponseFlags = "UF"
	batch[4].ResponseCode = 404
	batch[5].SourceWorkload, batch[5].SourcePod, batch[5].SourceNamespace = "frontend", "frontend-1", "web"
	batch[5].DestinationWorkload, batch[5].DestinationPod = "payment", "payment-0"
	batch[6].Protocol, batch[6].ResponseCode, batch[6].ResponseFlags = "tcp", 0, "UF"
	require.NoError(t, s.Write(batch))
	require.NoError(t, s.Flush())

	tests := []struct {
		name string
		q    Query
		want []string
		more bool
	}{
		{name: "everything", q: Query{}, want: []string{"/items/0", "/items/1", "/items/2", "/items/3", "/items/4", "/items/5", "/items/6", "/items/7", "/items/8", "/items/9"}},
		{name: "limit keeps the newest", q: Query{Limit: 2}, want: []string{"/items/8", "/items/9"}, more: true},
		{name: "trace id, any case", q: Query{TraceID: strings.ToUpper(fmt.Sprintf("%032x", 3))}, want: []string{"/items/2"}},
		{name: "status class 5xx", q: Query{Status: "5xx"}, want: []string{"/items/3"}},
		{name: "status class 4xx", q: Query{Status: "4XX"}, want: []string{"/items/4"}},
		{name: "failed includes TCP", q: Query{Status: "failed"}, want: []string{"/items/3", "/items/6"}},
		{name: "source workload", q: Query{Workload: "web/frontend"}, want: []string{"/items/5"}},
		{name: "destination workload without namespace", q: Query{Workload: "payment"}, want: []string{"/items/5"}},
		{name: "pod name", q: Query{Workload: "web/frontend-1"}, want: []string{"/items/5"}},
		{name: "wrong namespace", q: Query{Workload: "shop/frontend"}, want: nil},
		{name: "since", q: Query{Since: t0.Add(8 * time.Millisecond)}, want: []string{"/items/8", "/items/9"}},
		{name: "until", q: Query{Until: t0.Add(1 * time.Millisecond)}, want: []string{"/items/0", "/items/1"}},
		{name: "all together", q: Query{Workload: "shop/product", Status: "2xx", Since: t0.Add(6 * time.Millisecond), Until: t0.Add(8 * time.Millisecond)}, want: []string{"/items/7", "/items/8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := s.Query(tt.q)
			require.NoError(t, err)
			require.Equal(t, tt.want, paths(res.Entries))
			require.Equal(t, tt.more, res.Truncated)
		})
	}
	t.Run("entries come back as they went in", func(t *testing.T) {
		res, err := s.Query(Query{TraceID: batch[3].TraceID})
		require.NoError(t, err)
		require.Len(t, res.Entries, 1)
		require.Equal(t, *batch[3], res.Entries[0])
	})
}

func TestQueryValidate(t *testing.T) {
	tests := []struct {
		q    Query
		want string
	}{
		{Query{Status: "2xy"}, `status "2xy"`},
		{Query{TraceID: "xyz"}, `trace id "xyz"`},
		{Query{Limit: -1}, "limit -1"},
		{Query{Limit: MaxQueryLimit + 1}, "limit 10001"},
		{Query{Since: t0, Until: t0.Add(-time.Second)}, "is before since"},
		{Query{Workload: "shop/"}, `workload "shop/"`},
		{Query{Workload: "a/b/c"}, `workload "a/b/c"`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			require.ErrorContains(t, tt.q.Validate(), tt.want)
		})
	}
	require.NoError(t, (&Query{Workload: "shop/client", Status: "failed", TraceID: "ABCdef01"}).Validate())
}

func TestStoreConfigValidate(t *testing.T) {
	_, err := OpenStore(StoreConfig{}, zap.NewNop())
	require.ErrorContains(t, err, "a directory is required")
	_, err = OpenStore(StoreConfig{Dir: t.TempDir(), MaxBytes: 8 << 10, SegmentBytes: 6 << 10}, zap.NewNop())
	require.ErrorContains(t, err, "must hold at least two segments")
}

func BenchmarkStoreWrite(b *testing.B) {
	s := openStore(b, StoreConfig{MaxBytes: 8 << 20}, nil)
	batch := make([]*Entry, 64)
	for i := range batch {
		batch[i] = entry(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(batch) {
		if err := s.Write(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	require.NoError(b, s.Flush())
}
