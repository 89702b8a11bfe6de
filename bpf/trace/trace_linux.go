//go:build linux

package trace

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// Maps are the shared event stream's maps.
type Maps struct {
	maps traceMaps
}

// NewMaps creates the ring buffer, the filter and the lost counter. Pass
// them to every BPF object as map replacements (Events, Config, Lost).
func NewMaps() (*Maps, error) {
	spec, err := loadTrace()
	if err != nil {
		return nil, fmt.Errorf("load trace spec: %w", err)
	}
	m := &Maps{}
	if err := spec.LoadAndAssign(&m.maps, nil); err != nil {
		return nil, fmt.Errorf("create trace maps: %w", err)
	}
	return m, nil
}

// Events is the ring buffer.
func (m *Maps) Events() *ebpf.Map { return m.maps.Events }

// Config is the kernel-side filter.
func (m *Maps) Config() *ebpf.Map { return m.maps.TraceCfg }

// Lost is the lost-event counter.
func (m *Maps) Lost() *ebpf.Map { return m.maps.TraceLost }

// SetFilter tells the programs which kinds to emit (a mask of 1<<Kind; 0
// turns tracing off) and, if cgroupID is not 0, for which pod only.
func (m *Maps) SetFilter(kinds uint32, cgroupID uint64) error {
	f := traceTraceFilter{Kinds: kinds, CgroupId: cgroupID}
	if err := m.maps.TraceCfg.Update(uint32(0), &f, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set trace filter: %w", err)
	}
	return nil
}

// LostCount returns how many events found the ring full, over all CPUs.
func (m *Maps) LostCount() (uint64, error) {
	var perCPU []uint64
	if err := m.maps.TraceLost.Lookup(uint32(0), &perCPU); err != nil {
		return 0, fmt.Errorf("look up trace_lost: %w", err)
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n, nil
}

// NewReader opens the ring buffer for reading.
func (m *Maps) NewReader() (*ringbuf.Reader, error) { return ringbuf.NewReader(m.maps.Events) }

// Close releases the maps.
func (m *Maps) Close() error { return m.maps.Close() }

// ErrShort is returned for a record too short to be an event.
var ErrShort = errors.New("trace record too short")

// Decode decodes a ring buffer record.
func Decode(raw []byte) (Event, error) {
	var ev traceSkeinEvent
	if len(raw) < binary.Size(ev) {
		return Event{}, ErrShort
	}
	if err := binary.Read(bytes.NewReader(raw), binary.NativeEndian, &ev); err != nil {
		return Event{}, fmt.Errorf("decode trace event: %w", err)
	}
	return Event{
		Time:     time.Duration(ev.TsNs),
		CgroupID: ev.CgroupId,
		Kind:     Kind(ev.Kind),
		Reason:   ev.Reason,
		Value:    ev.Value,
		Src:      netip.AddrPortFrom(addr(ev.Saddr.W), ev.Sport),
		Dst:      netip.AddrPortFrom(addr(ev.Daddr.W), ev.Dport),
		Orig:     netip.AddrPortFrom(addr(ev.Orig.W), ev.OrigPort),
	}, nil
}

func addr(w [4]uint32) netip.Addr {
	var b [16]byte
	for i := range w {
		binary.NativeEndian.PutUint32(b[i*4:], w[i])
	}
	a := netip.AddrFrom16(b).Unmap()
	if a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}
