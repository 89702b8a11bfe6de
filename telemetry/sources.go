package telemetry

import "time"

// The agent implements these; the collectors read them at scrape time.

// MapFill is one BPF map's fill.
type MapFill struct {
	Name       string
	Entries    int
	MaxEntries int
	// CountsLosses is set for maps whose programs count what map pressure
	// cost them: InsertFailures (entries not added) and, for an LRU map
	// (LRU), Evicted (entries pushed out while in use).
	CountsLosses   bool
	LRU            bool
	InsertFailures uint64
	Evicted        uint64
}

// MapSource lists the agent's BPF maps with their fill.
type MapSource interface {
	MapFill() ([]MapFill, error)
}

// CaptureSource reads the capture programs' counters.
type CaptureSource interface {
	// CaptureVerdicts counts connects by verdict (redirected, fail_open...).
	CaptureVerdicts() (map[string]uint64, error)
	// StrictDrops counts inbound plaintext connections dropped by STRICT.
	StrictDrops() (uint64, error)
	// RingbufLost counts trace events that found the ring buffer full.
	RingbufLost() (uint64, error)
}

// ConfigState describes the configuration the agent serves.
type ConfigState struct {
	Generation int64
	// Rejected is the number of objects rejected in the last update.
	Rejected int
	// Updates counts applied updates; RejectedUpdates those that rejected
	// at least one object.
	Updates, RejectedUpdates uint64
	// Applied is when Generation was applied; zero before the first.
	Applied time.Time
}

// ConfigSource reads the configuration state.
type ConfigSource interface {
	ConfigState() ConfigState
}

// CertSource lists the workload certificates' expiry times by identity.
type CertSource interface {
	CertExpiries() map[string]time.Time
}

// ProxySource reads the proxy's decision counters.
type ProxySource interface {
	AuthzDecisions() (allowed, denied uint64)
}
