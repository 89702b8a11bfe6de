package accesslog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Defaults of the store.
const (
	DefaultMaxBytes = 100 << 20
	DefaultMaxAge   = 72 * time.Hour
	DefaultDir      = "/var/lib/skein/accesslog"

	minSegmentBytes = 4 << 10
	maxSegmentBytes = 16 << 20
	segmentSuffix   = ".jsonl"
	// maxLine bounds one line on reading; longer lines are skipped.
	maxLine = 64 << 10
)

// StoreConfig configures the node-local store.
type StoreConfig struct {
	// Dir holds the segment files. Required.
	Dir string
	// MaxBytes caps the size of all segments together; the oldest segment
	// goes first. Zero: DefaultMaxBytes (100 MiB).
	MaxBytes int64
	// MaxAge caps the age of what the store keeps and answers. Zero:
	// DefaultMaxAge (72h).
	MaxAge time.Duration
	// SegmentBytes is the size at which a segment is closed and the next
	// begun; a segment also closes when older than MaxAge/16, so that age
	// expiry deletes in small steps. Zero: MaxBytes/16, within 4 KiB and
	// 16 MiB.
	SegmentBytes int64
	// Now is the clock (tests). Zero: time.Now.
	Now func() time.Time
}

func (c *StoreConfig) setDefaults() {
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = min(max(c.MaxBytes/16, minSegmentBytes), maxSegmentBytes)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

func (c *StoreConfig) validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("a directory is required"))
	}
	if c.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("max age %s is negative", c.MaxAge))
	}
	if c.SegmentBytes < 1<<10 {
		errs = append(errs, fmt.Errorf("segment size %d is below 1 KiB", c.SegmentBytes))
	}
	if c.MaxBytes < 2*c.SegmentBytes {
		errs = append(errs, fmt.Errorf("size cap %d must hold at least two segments of %d bytes", c.MaxBytes, c.SegmentBytes))
	}
	return errors.Join(errs...)
}

// Store keeps access-log entries on disk: segment files of JSON lines
// named by a sequence number (0000000000000042.jsonl), the newest one
// appended to. The total size and the age of what it keeps are capped;
// the oldest segment is deleted first. A new Store on the same directory
// (the next agent) appends where the last one stopped.
//
// Write and Flush are meant for one goroutine (the Logger's); Query is
// safe to call concurrently with them.
type Store struct {
	cfg StoreConfig
	log *zap.Logger
	enc zapcore.Encoder

	mu    sync.Mutex
	segs  []segment // oldest first; while f is open, the last is active
	total int64
	f     *os.File
	w     *bufio.Writer
	// activeSince is when the active segment's first entry was written.
	activeSince time.Time
	lastSweep   time.Time
	closed      bool
}

type segment struct {
	seq  uint64
	size int64
	mod  time.Time
}

// OpenStore opens (creating it if needed) the store in cfg.Dir. It appends
// to the newest segment if that has room and ends with a whole line; a
// segment cut short by a crash is left as it is (queries skip the broken
// line) and a new one begun.
func OpenStore(cfg StoreConfig, log *zap.Logger) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("access log store: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("create access log directory: %w", err)
	}
	s := &Store{cfg: cfg, log: log.Named("accesslog"), enc: newEncoder()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.scan(); err != nil {
		return nil, err
	}
	if err := s.reopen(); err != nil {
		return nil, err
	}
	s.sweep(cfg.Now())
	return s, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.cfg.Dir }

func (s *Store) path(seq uint64) string {
	return filepath.Join(s.cfg.Dir, fmt.Sprintf("%016d%s", seq, segmentSuffix))
}

// scan reads the segments in the directory; other files are left alone.
func (s *Store) scan() error {
	des, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("read access log directory: %w", err)
	}
	var segs []segment
	var total int64
	for _, de := range des {
		name := de.Name()
		num, ok := strings.CutSuffix(name, segmentSuffix)
		if !ok || !de.Type().IsRegular() {
			continue
		}
		seq, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			continue // deleted meanwhile
		}
		segs = append(segs, segment{seq: seq, size: fi.Size(), mod: fi.ModTime()})
		total += fi.Size()
	}
	slices.SortFunc(segs, func(a, b segment) int { return cmpUint(a.seq, b.seq) })
	s.segs, s.total = segs, total
	return nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// reopen makes the newest segment the active one if it can take more.
func (s *Store) reopen() error {
	if len(s.segs) == 0 {
		return nil
	}
	last := s.segs[len(s.segs)-1]
	if last.size == 0 || last.size >= s.cfg.SegmentBytes {
		return nil
	}
	p := s.path(last.seq)
	first, whole, err := firstAndLast(p)
	if err != nil || !whole || s.cfg.Now().Sub(first) >= s.segmentAge() {
		return nil // begin a new segment on the first write
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("reopen access log segment: %w", err)
	}
	s.f, s.w, s.activeSince = f, bufio.NewWriterSize(f, 32<<10), first
	return nil
}

// firstAndLast returns when a segment's first entry was written (its end:
// start plus duration) and whether the segment ends with a whole line.
func firstAndLast(path string) (time.Time, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}, false, err
	}
	defer f.Close()
	line, err := bufio.NewReaderSize(f, maxLine).ReadSlice('\n')
	if err != nil {
		return time.Time{}, false, err
	}
	var e Entry
	if err := json.Unmarshal(line, &e); err != nil {
		return time.Time{}, false, err
	}
	fi, err := f.Stat()
	if err != nil {
		return time.Time{}, false, err
	}
	var b [1]byte
	if _, err := f.ReadAt(b[:], fi.Size()-1); err != nil {
		return time.Time{}, false, err
	}
	return e.Start.Add(e.Duration()), b[0] == '\n', nil
}

func (s *Store) segmentAge() time.Duration { return s.cfg.MaxAge / 16 }

// Write implements Sink: it appends the entries, closing segments as they
// fill and deleting the oldest while the store is over its size cap.
func (s *Store) Write(batch []*Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	now := s.cfg.Now()
	var errs []error
	for _, e := range batch {
		buf, err := encode(s.enc, e)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n := int64(buf.Len())
		if s.f == nil || s.active().size > 0 && (s.active().size+n > s.cfg.SegmentBytes || now.Sub(s.activeSince) >= s.segmentAge()) {
			if err := s.rotate(now); err != nil {
				buf.Free()
				return errors.Join(append(errs, err)...)
			}
		}
		_, err = s.w.Write(buf.Bytes())
		buf.Free()
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("write access log: %w", err))...)
		}
		a := s.active()
		a.size += n
		a.mod = now
		s.total += n
		s.enforceSize()
	}
	return errors.Join(errs...)
}

// active returns the active segment; s.f must be open.
func (s *Store) active() *segment { return &s.segs[len(s.segs)-1] }

// rotate closes the active segment and begins the next. Another agent may
// write the same directory for a moment (a hitless restart drains the old
// one while the new one runs): each writes its own segment, found with
// O_EXCL, and sizes are re-read from the disk here.
func (s *Store) rotate(now time.Time) error {
	if err := s.closeActive(); err != nil {
		s.log.Warn("close access log segment", zap.Error(err))
	}
	if err := s.scan(); err != nil {
		return err
	}
	var seq uint64 = 1
	if len(s.segs) > 0 {
		seq = s.segs[len(s.segs)-1].seq + 1
	}
	for tries := 0; ; tries++ {
		f, err := os.OpenFile(s.path(seq), os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o640)
		if errors.Is(err, fs.ErrExist) && tries < 100 {
			seq++
			continue
		}
		if err != nil {
			return fmt.Errorf("create access log segment: %w", err)
		}
		s.f, s.w = f, bufio.NewWriterSize(f, 32<<10)
		s.segs = append(s.segs, segment{seq: seq, mod: now})
		s.activeSince = now
		return nil
	}
}

func (s *Store) closeActive() error {
	if s.f == nil {
		return nil
	}
	err := errors.Join(s.w.Flush(), s.f.Close())
	s.f, s.w = nil, nil
	return err
}

// enforceSize deletes the oldest segments while the store is over its cap;
// the active segment stays.
func (s *Store) enforceSize() {
	for s.total > s.cfg.MaxBytes && len(s.segs) > 1 {
		s.remove(0)
	}
}

// remove deletes segment i.
func (s *Store) remove(i int) {
	seg := s.segs[i]
	if err := os.Remove(s.path(seg.seq)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("delete access log segment", zap.Uint64("segment", seg.seq), zap.Error(err))
	}
	s.total -= seg.size
	s.segs = slices.Delete(s.segs, i, i+1)
}

// sweep deletes segments whose newest entry is older than MaxAge, the
// active one included (then the next write begins a new one).
func (s *Store) sweep(now time.Time) {
	s.lastSweep = now
	cutoff := now.Add(-s.cfg.MaxAge)
	for len(s.segs) > 0 && s.segs[0].mod.Before(cutoff) {
		if len(s.segs) == 1 && s.f != nil {
			if err := s.closeActive(); err != nil {
				s.log.Warn("close access log segment", zap.Error(err))
			}
		}
		s.remove(0)
	}
	s.enforceSize()
}

// Flush implements Sink: it writes buffered lines to the file (queries read
// the files) and, every few seconds, deletes expired segments.
func (s *Store) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	var err error
	if s.w != nil {
		err = s.w.Flush()
	}
	now := s.cfg.Now()
	if now.Sub(s.lastSweep) >= min(s.segmentAge(), 5*time.Second) {
		s.sweep(now)
	}
	return err
}

// Close implements Sink: it flushes and closes the active segment. It is
// idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.closeActive()
}

// Size returns the bytes the store holds and the number of segments.
func (s *Store) Size() (bytes int64, segments int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total, len(s.segs)
}

// Query returns the newest entries that match q, oldest first. It reads
// the segments newest first and stops once it has enough; entries older
// than MaxAge are never returned, and lines that cannot be decoded are
// skipped and counted.
func (s *Store) Query(q Query) (Result, error) {
	if err := q.Validate(); err != nil {
		return Result{}, err
	}
	limit := q.limit()
	s.mu.Lock()
	if s.w != nil {
		_ = s.w.Flush()
	}
	segs := slices.Clone(s.segs)
	now := s.cfg.Now()
	s.mu.Unlock()
	if floor := now.Add(-s.cfg.MaxAge); q.Since.Before(floor) {
		q.Since = floor
	}
	var res Result
	var traceID []byte
	if q.TraceID != "" {
		traceID = []byte(`"trace_id":"` + strings.ToLower(q.TraceID) + `"`)
	}
	for i := len(segs) - 1; i >= 0 && len(res.Entries) < limit; i-- {
		if segs[i].mod.Before(q.Since) {
			break // this segment and all older ones end before the range
		}
		if err := s.scanSegment(segs[i].seq, &q, traceID, &res); err != nil {
			return Result{}, err
		}
	}
	slices.SortStableFunc(res.Entries, func(a, b Entry) int { return a.Start.Compare(b.Start) })
	if len(res.Entries) > limit {
		res.Entries = slices.Delete(res.Entries, 0, len(res.Entries)-limit)
		res.Truncated = true
	}
	return res, nil
}

// scanSegment appends the matching entries of one segment to res.
func (s *Store) scanSegment(seq uint64, q *Query, traceID []byte, res *Result) error {
	f, err := os.Open(s.path(seq))
	if errors.Is(err, fs.ErrNotExist) {
		return nil // deleted since the listing
	}
	if err != nil {
		return fmt.Errorf("read access log segment: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, maxLine)
	for {
		line, err := r.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			res.Corrupt++
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			continue
		case errors.Is(err, io.EOF):
			// A last line without its newline is being written, or was
			// cut short by a crash: skip it.
			return nil
		case err != nil:
			return fmt.Errorf("read access log segment: %w", err)
		}
		res.Scanned++
		if traceID != nil && !bytes.Contains(line, traceID) {
			continue
		}
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			res.Corrupt++
			continue
		}
		if q.Match(&e) {
			res.Entries = append(res.Entries, e)
		}
	}
}

var errClosed = errors.New("access log closed")

var _ Sink = (*Store)(nil)
