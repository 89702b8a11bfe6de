//go:build linux

package agent

import (
	"sort"

	"github.com/cilium/ebpf"

	"github.com/skeinmesh/skein/agent/admin"
)

// mapStatus counts the entries of each map. Counting iterates the keys, so
// it costs O(entries); it runs on demand (agentctl status, scrapes), never on
// the data path.
func mapStatus(maps map[string]*ebpf.Map) []admin.Map {
	var out []admin.Map
	for name, m := range maps {
		ms := admin.Map{Name: name, Type: m.Type().String(), MaxEntries: m.MaxEntries()}
		ms.Entries = countEntries(m)
		if ms.MaxEntries > 0 && ms.Entries >= 0 {
			ms.Fill = float64(ms.Entries) / float64(ms.MaxEntries)
		}
		out = append(out, ms)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// countEntries returns the number of keys in a hash-like map, the number of
// slots of an array, and -1 where keys cannot be listed (sk_storage).
func countEntries(m *ebpf.Map) int {
	switch m.Type() {
	case ebpf.Array, ebpf.PerCPUArray:
		return int(m.MaxEntries())
	case ebpf.SkStorage, ebpf.RingBuf:
		return -1
	case ebpf.SockMap:
		var v uint64
		n := 0
		for k := uint32(0); k < m.MaxEntries(); k++ {
			if m.Lookup(k, &v) == nil {
				n++
			}
		}
		return n
	}
	// Walk the keys only: values may be per-CPU.
	n := 0
	var key []byte
	next := make([]byte, m.KeySize())
	for n <= int(m.MaxEntries()) {
		var err error
		if key == nil {
			err = m.NextKey(nil, &next)
		} else {
			err = m.NextKey(key, &next)
		}
		if err != nil {
			break
		}
		n++
		key = append(key[:0], next...)
	}
	return n
}
