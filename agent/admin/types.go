package admin

import "time"

// APIVersion is the path prefix of this version of the API.
const APIVersion = "/v1"

// Status is the answer to GET /v1/status.
type Status struct {
	Version   string    `json:"version"`
	Commit    string    `json:"commit"`
	Node      string    `json:"node"`
	StartTime time.Time `json:"startTime"`
	Kernel    string    `json:"kernel"`
	Ready     bool      `json:"ready"`
	// Mode is PERMISSIVE or STRICT.
	Mode string `json:"mode"`
	// FailMode is "open" or "closed": what capture does when no proxy listens.
	FailMode string `json:"failMode"`
	// ProxyListening says whether the liveness entry is present.
	ProxyListening bool     `json:"proxyListening"`
	ProxyAddress   []string `json:"proxyAddress"`
	CgroupRoot     string   `json:"cgroupRoot"`
	PinPath        string   `json:"pinPath"`

	Features []Feature         `json:"features"`
	Programs []Program         `json:"programs"`
	Maps     []Map             `json:"maps"`
	Config   ConfigStatus      `json:"config"`
	Proxy    ProxyStats        `json:"proxy"`
	Capture  map[string]uint64 `json:"capture"`
	Certs    *CertSummary      `json:"certs,omitempty"`
}

// Feature is a kernel feature probe result.
type Feature struct {
	Name      string `json:"name"`
	Available bool   `json:"available"`
	Required  bool   `json:"required"`
	Detail    string `json:"detail,omitempty"`
}

// Program is an attached BPF program.
type Program struct {
	Name   string `json:"name"`
	ID     uint32 `json:"id"`
	LinkID uint32 `json:"linkID"`
	Pinned bool   `json:"pinned"`
}

// Map is a BPF map with its fill.
type Map struct {
	Name       string  `json:"name"`
	Type       string  `json:"type"`
	MaxEntries uint32  `json:"maxEntries"`
	Entries    int     `json:"entries"`
	Fill       float64 `json:"fill"`
}

// ConfigStatus describes the configuration the agent serves.
type ConfigStatus struct {
	Source      string         `json:"source"`
	Generation  int64          `json:"generation"`
	LastApplied time.Time      `json:"lastApplied"`
	Objects     map[string]int `json:"objects"`
	// Errors are the objects rejected in the last update; their last good
	// versions (if any) keep serving.
	Errors []string `json:"errors,omitempty"`
}

// ProxyStats are the proxy's counters.
type ProxyStats struct {
	Accepted    int64 `json:"accepted"`
	Active      int64 `json:"active"`
	NotCaptured int64 `json:"notCaptured"`
	Forwarded   int64 `json:"forwarded"`
	Failed      int64 `json:"failed"`
	HTTPConns   int64 `json:"httpConnections"`
	Requests    int64 `json:"requests"`
	// RequestErrors are requests answered with a 5xx or a proxy error.
	RequestErrors int64 `json:"requestErrors"`
}

// CertSummary summarizes the workload certificates held by the agent.
type CertSummary struct {
	Count      int       `json:"count"`
	NextExpiry time.Time `json:"nextExpiry"`
}

// Workload is a pod on this node, as GET /v1/workloads lists them.
type Workload struct {
	Namespace      string   `json:"namespace"`
	Pod            string   `json:"pod"`
	Workload       string   `json:"workload"`
	ServiceAccount string   `json:"serviceAccount"`
	Identity       string   `json:"identity"`
	IPs            []string `json:"ips"`
	UID            string   `json:"uid"`
	Cgroup         string   `json:"cgroup,omitempty"`
	CgroupID       uint64   `json:"cgroupID,omitempty"`
	Captured       bool     `json:"captured"`
	Reason         string   `json:"reason"`
	ExcludedPorts  []uint16 `json:"excludedPorts,omitempty"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}
