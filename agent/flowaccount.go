package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/skeinmesh/skein/bpf/flow"
	"github.com/skeinmesh/skein/telemetry"
)

// carryTTL is how long a label set that no kernel key maps to any more
// keeps being exported with what it carries; then its series end. An hour
// covers any sane scrape and rate window.
const carryTTL = time.Hour

// tcpAccount turns the kernel's per-key figures into per-label-set counters
// that never go down, whatever happens to the keys:
//
//   - a key that vanishes (Prune deleted it, or the map was recreated)
//     leaves its last figures in its label set's carry;
//   - a key whose label set changes (a Service's endpoints changed, a pod
//     IP went to another pod) leaves what the old set was exported with in
//     its carry, and counts only what comes after in the new one (its base);
//   - the node proxy's connect failures on behalf of captured connects,
//     which the kernel cannot see, are added to the carry as they happen.
//
// Carries and bases are saved to a file (see save) so that a restarted agent
// continues them: the kernel's maps are pinned, so its keys continue too.
type tcpAccount struct {
	mu    sync.Mutex
	keys  map[flow.Key]*keyState
	carry map[telemetry.TCPLabels]*carried
	// dirty says that carry or a base changed since the last save.
	dirty bool
}

// keyState is what the account knows of one kernel key.
type keyState struct {
	labels telemetry.TCPLabels
	// base is subtracted from the key's figures: what it counted under an
	// earlier label set.
	base telemetry.TCPStats
	// last are the figures read last.
	last telemetry.TCPStats
}

// carried is what a label set keeps of keys that are gone.
type carried struct {
	stats telemetry.TCPStats
	// seen is when a key last mapped to the label set, or a proxy failure
	// was added.
	seen time.Time
}

func newTCPAccount() *tcpAccount {
	return &tcpAccount{keys: map[flow.Key]*keyState{}, carry: map[telemetry.TCPLabels]*carried{}}
}

// tcpStats converts a key's figures to the exported semantics: bytes by the
// connection's direction (sent: destination to source), whichever side the
// pod is on.
func tcpStats(dir flow.Direction, s flow.Stats) telemetry.TCPStats {
	out := telemetry.TCPStats{
		Opened: s.Opened, Closed: s.Closed, Failed: s.Failed, Retransmits: s.Retransmits,
		ResetsSent: s.ResetsSent, ResetsReceived: s.ResetsReceived,
		SentBytes: s.BytesReceived, ReceivedBytes: s.BytesSent,
		RTT:     telemetry.Histogram(s.RTT),
		Connect: telemetry.Histogram(s.Connect),
	}
	if dir == flow.Inbound {
		out.SentBytes, out.ReceivedBytes = s.BytesSent, s.BytesReceived
	}
	return out
}

// update reads the kernel's figures of every key (all of them: a key
// missing from aggs is taken as gone) and returns the series of every label
// set, sorted.
func (t *tcpAccount) update(aggs map[flow.Key]flow.Stats, resolve func(flow.Key) telemetry.TCPLabels, now time.Time) []telemetry.TCPSeries {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[telemetry.TCPLabels]*telemetry.TCPStats{}
	sum := func(l telemetry.TCPLabels, s telemetry.TCPStats) {
		if o := out[l]; o != nil {
			*o = addStats(*o, s)
			return
		}
		out[l] = &s
	}
	for k, s := range aggs {
		raw := tcpStats(k.Direction, s)
		l := resolve(k)
		st := t.keys[k]
		switch {
		case st == nil:
			st = &keyState{labels: l}
			t.keys[k] = st
		case regressed(raw, st.last):
			// The key was deleted and made anew between two reads: what
			// the old one counted stays.
			t.addCarry(st.labels, subStats(st.last, st.base), now)
			st.base, st.last = telemetry.TCPStats{}, telemetry.TCPStats{}
		}
		if st.labels != l {
			// The old set keeps what it was exported with; what the key
			// counted since the last read goes to the new one.
			t.addCarry(st.labels, subStats(st.last, st.base), now)
			st.base, st.labels = st.last, l
			t.dirty = true
		}
		st.last = raw
		sum(st.labels, subStats(raw, st.base))
	}
	for k, st := range t.keys {
		if _, ok := aggs[k]; !ok {
			t.addCarry(st.labels, subStats(st.last, st.base), now)
			delete(t.keys, k)
		}
	}
	for l, c := range t.carry {
		if _, active := out[l]; active {
			c.seen = now
		} else if now.Sub(c.seen) > carryTTL {
			delete(t.carry, l)
			t.dirty = true
			continue
		}
		sum(l, c.stats)
	}
	series := make([]telemetry.TCPSeries, 0, len(out))
	for l, s := range out {
		series = append(series, telemetry.TCPSeries{Labels: l, Stats: *s})
	}
	sort.Slice(series, func(i, j int) bool { return lessLabels(&series[i].Labels, &series[j].Labels) })
	return series
}

// addFailure counts a failed connect the node proxy made on behalf of a
// captured one.
func (t *tcpAccount) addFailure(l telemetry.TCPLabels, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addCarry(l, telemetry.TCPStats{Failed: 1}, now)
}

func (t *tcpAccount) addCarry(l telemetry.TCPLabels, s telemetry.TCPStats, now time.Time) {
	c := t.carry[l]
	if c == nil {
		c = &carried{}
		t.carry[l] = c
	}
	c.stats = addStats(c.stats, s)
	c.seen = now
	t.dirty = true
}

// carries returns how many label sets carry figures of gone keys or proxy
// failures.
func (t *tcpAccount) carries() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.carry)
}

func lessLabels(a, b *telemetry.TCPLabels) bool {
	as := [...]string{a.Reporter, a.SourceNamespace, a.SourceWorkload, a.DestinationNamespace, a.DestinationService, a.DestinationWorkload, a.SecurityPolicy}
	bs := [...]string{b.Reporter, b.SourceNamespace, b.SourceWorkload, b.DestinationNamespace, b.DestinationService, b.DestinationWorkload, b.SecurityPolicy}
	for i := range as {
		if as[i] != bs[i] {
			return as[i] < bs[i]
		}
	}
	return false
}

// regressed says whether any counter of cur is below prev: the figures
// restarted.
func regressed(cur, prev telemetry.TCPStats) bool {
	return cur.Opened < prev.Opened || cur.Closed < prev.Closed || cur.Failed < prev.Failed ||
		cur.Retransmits < prev.Retransmits || cur.ResetsSent < prev.ResetsSent || cur.ResetsReceived < prev.ResetsReceived ||
		cur.SentBytes < prev.SentBytes || cur.ReceivedBytes < prev.ReceivedBytes ||
		cur.RTT.Count < prev.RTT.Count || cur.Connect.Count < prev.Connect.Count
}

func zeroStats(s telemetry.TCPStats) bool {
	return !regressed(telemetry.TCPStats{}, s) && s.RTT.Count == 0 && s.Connect.Count == 0
}

func addStats(a, b telemetry.TCPStats) telemetry.TCPStats {
	return telemetry.TCPStats{
		Opened: a.Opened + b.Opened, Closed: a.Closed + b.Closed, Failed: a.Failed + b.Failed,
		Retransmits: a.Retransmits + b.Retransmits,
		ResetsSent:  a.ResetsSent + b.ResetsSent, ResetsReceived: a.ResetsReceived + b.ResetsReceived,
		SentBytes: a.SentBytes + b.SentBytes, ReceivedBytes: a.ReceivedBytes + b.ReceivedBytes,
		RTT: addHist(a.RTT, b.RTT, 1), Connect: addHist(a.Connect, b.Connect, 1),
	}
}

// subStats is a - b for figures of one key, a read after b (never below).
func subStats(a, b telemetry.TCPStats) telemetry.TCPStats {
	d := func(x, y uint64) uint64 {
		if x < y {
			return 0
		}
		return x - y
	}
	return telemetry.TCPStats{
		Opened: d(a.Opened, b.Opened), Closed: d(a.Closed, b.Closed), Failed: d(a.Failed, b.Failed),
		Retransmits: d(a.Retransmits, b.Retransmits),
		ResetsSent:  d(a.ResetsSent, b.ResetsSent), ResetsReceived: d(a.ResetsReceived, b.ResetsReceived),
		SentBytes: d(a.SentBytes, b.SentBytes), ReceivedBytes: d(a.ReceivedBytes, b.ReceivedBytes),
		RTT: addHist(a.RTT, b.RTT, -1), Connect: addHist(a.Connect, b.Connect, -1),
	}
}

// addHist adds (sign 1) or subtracts (sign -1) b from a. Histograms share
// their bounds (the kernel's); an empty one has none.
func addHist(a, b telemetry.Histogram, sign int) telemetry.Histogram {
	if b.Count == 0 && len(b.Counts) == 0 {
		return a
	}
	bounds := a.Bounds
	if len(bounds) == 0 {
		bounds = b.Bounds
	}
	out := telemetry.Histogram{Bounds: bounds, Counts: make([]uint64, len(bounds))}
	at := func(h telemetry.Histogram, i int) uint64 {
		if i < len(h.Counts) {
			return h.Counts[i]
		}
		return 0
	}
	for i := range out.Counts {
		if sign > 0 {
			out.Counts[i] = at(a, i) + at(b, i)
		} else if x, y := at(a, i), at(b, i); x > y {
			out.Counts[i] = x - y
		}
	}
	if sign > 0 {
		out.Count, out.Sum = a.Count+b.Count, a.Sum+b.Sum
	} else {
		if a.Count > b.Count {
			out.Count = a.Count - b.Count
		}
		if out.Sum = a.Sum - b.Sum; out.Sum < 0 || out.Count == 0 {
			out.Sum = 0
		}
	}
	return out
}

// accountFile is what save writes: the carries and the bases of keys that
// changed label set.
type accountFile struct {
	Version int            `json:"version"`
	Carry   []carryRecord  `json:"carry"`
	Rebased []rebaseRecord `json:"rebased,omitempty"`
}

type carryRecord struct {
	Labels telemetry.TCPLabels `json:"labels"`
	Stats  telemetry.TCPStats  `json:"stats"`
	Seen   time.Time           `json:"seen"`
}

type rebaseRecord struct {
	CgroupID  uint64              `json:"cgroupID"`
	Peer      netip.AddrPort      `json:"peer"`
	Direction flow.Direction      `json:"direction"`
	Labels    telemetry.TCPLabels `json:"labels"`
	Base      telemetry.TCPStats  `json:"base"`
}

const accountFileVersion = 1

// save writes the account to path atomically when it changed since the last
// save.
func (t *tcpAccount) save(path string) error {
	t.mu.Lock()
	if !t.dirty {
		t.mu.Unlock()
		return nil
	}
	f := accountFile{Version: accountFileVersion}
	for l, c := range t.carry {
		f.Carry = append(f.Carry, carryRecord{Labels: l, Stats: c.stats, Seen: c.seen})
	}
	for k, st := range t.keys {
		if !zeroStats(st.base) {
			f.Rebased = append(f.Rebased, rebaseRecord{CgroupID: k.CgroupID, Peer: k.Peer, Direction: k.Direction, Labels: st.labels, Base: st.base})
		}
	}
	t.dirty = false
	t.mu.Unlock()
	sort.Slice(f.Carry, func(i, j int) bool { return lessLabels(&f.Carry[i].Labels, &f.Carry[j].Labels) })
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode flow counters: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save flow counters: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save flow counters: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save flow counters: %w", err)
	}
	return nil
}

// load reads what a previous agent saved; a missing file is an empty
// account.
func (t *tcpAccount) load(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read flow counters: %w", err)
	}
	var f accountFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("decode flow counters %s: %w", path, err)
	}
	if f.Version != accountFileVersion {
		return fmt.Errorf("flow counters %s: version %d, want %d", path, f.Version, accountFileVersion)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range f.Carry {
		t.carry[c.Labels] = &carried{stats: c.Stats, seen: c.Seen}
	}
	for _, r := range f.Rebased {
		t.keys[flow.Key{CgroupID: r.CgroupID, Peer: r.Peer, Direction: r.Direction}] = &keyState{labels: r.Labels, base: r.Base, last: r.Base}
	}
	return nil
}
