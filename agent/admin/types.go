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
	// StrictDrops counts new inbound plaintext connections STRICT mode
	// dropped in the kernel.
	StrictDrops uint64 `json:"strictDrops"`
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
	// Flows is the kernel flow telemetry (bpf/flow): its programs, their
	// cost and its maps' health.
	Flows *FlowStatus `json:"flows,omitempty"`
}

// FlowStatus says whether the kernel flow figures are collected, and at
// what cost.
type FlowStatus struct {
	Enabled bool `json:"enabled"`
	// Error says why they are not (e.g. a kernel without sockops); the
	// agent runs on without them.
	Error    string        `json:"error,omitempty"`
	PinPath  string        `json:"pinPath,omitempty"`
	Programs []FlowProgram `json:"programs,omitempty"`
	Maps     []FlowMap     `json:"maps,omitempty"`
	// LostEvents counts trace events that found the ring buffer full (the
	// ring and its counter are shared with capture).
	LostEvents uint64 `json:"lostEvents"`
	// Keys is how many aggregates the kernel keeps; Carried how many label
	// sets carry figures of pruned keys or proxy-side connect failures.
	Keys    int `json:"keys"`
	Carried int `json:"carried"`
	// Pruned counts the idle keys this agent pruned.
	Pruned uint64 `json:"pruned"`
}

// FlowProgram is one hook of the flow telemetry, with the kernel's run
// statistics (counted while kernel.bpf_stats_enabled is 1).
type FlowProgram struct {
	Name   string `json:"name"`
	Hook   string `json:"hook"`
	ID     uint32 `json:"id,omitempty"`
	LinkID uint32 `json:"linkID,omitempty"`
	Pinned bool   `json:"pinned"`
	// Missing says why the hook is not in use on this kernel.
	Missing   string  `json:"missing,omitempty"`
	RunCount  uint64  `json:"runCount"`
	RunTimeNs uint64  `json:"runTimeNs"`
	NsPerRun  float64 `json:"nsPerRun"`
}

// FlowMap is one map of the flow telemetry with its fill and losses.
type FlowMap struct {
	Name string `json:"name"`
	// Entries is -1 when it cannot be counted; MaxEntries 0 for the
	// per-socket storage, which has no fixed size.
	Entries        int     `json:"entries"`
	MaxEntries     int     `json:"maxEntries"`
	Fill           float64 `json:"fill"`
	InsertFailures uint64  `json:"insertFailures"`
	Evicted        uint64  `json:"evicted"`
}

// FlowQuery selects live flows, as GET /v1/flows takes it in its query
// string: pod=namespace/name, direction=outbound|inbound.
type FlowQuery struct {
	Pod       string `json:"pod,omitempty"`
	Direction string `json:"direction,omitempty"`
}

// Flows is the answer to GET /v1/flows: the open TCP flows of the node's
// meshed pods.
type Flows struct {
	Enabled bool   `json:"enabled"`
	Error   string `json:"error,omitempty"`
	Flows   []Flow `json:"flows"`
}

// Flow is one open TCP flow of a meshed pod.
type Flow struct {
	// Pod (namespace/name) and Workload of the node's pod.
	Pod      string `json:"pod"`
	Workload string `json:"workload,omitempty"`
	// Direction is outbound (the pod connected) or inbound (it accepted).
	Direction string `json:"direction"`
	// Local and Peer are the pod socket's own addresses; for a connect
	// that capture redirected, Peer is the node proxy and Dialed the
	// address the app dialed.
	Local  string `json:"local"`
	Peer   string `json:"peer"`
	Dialed string `json:"dialed,omitempty"`
	// PeerName names the other side: "service shop/web", "pod shop/web-1",
	// "node proxy".
	PeerName      string    `json:"peerName,omitempty"`
	State         string    `json:"state"`
	SRTTUs        uint64    `json:"srttUs"`
	Retransmits   uint32    `json:"retransmits"`
	BytesSent     uint64    `json:"bytesSent"`
	BytesReceived uint64    `json:"bytesReceived"`
	Start         time.Time `json:"start"`
	Cookie        uint64    `json:"cookie"`
}

// FlowSummary is the answer to GET /v1/flows/summary: the figures exported
// as skein_tcp_*, one entry per label set.
type FlowSummary struct {
	Enabled bool         `json:"enabled"`
	Error   string       `json:"error,omitempty"`
	Series  []FlowSeries `json:"series"`
}

// FlowSeries is one label set of the TCP metrics with its figures.
type FlowSeries struct {
	Reporter             string `json:"reporter"`
	SourceWorkload       string `json:"sourceWorkload"`
	SourceNamespace      string `json:"sourceNamespace"`
	DestinationService   string `json:"destinationService"`
	DestinationWorkload  string `json:"destinationWorkload"`
	DestinationNamespace string `json:"destinationNamespace"`
	SecurityPolicy       string `json:"connectionSecurityPolicy"`
	Opened               uint64 `json:"opened"`
	Closed               uint64 `json:"closed"`
	Failed               uint64 `json:"failed"`
	Retransmits          uint64 `json:"retransmits"`
	ResetsSent           uint64 `json:"resetsSent"`
	ResetsReceived       uint64 `json:"resetsReceived"`
	// SentBytes went from the destination to the source, ReceivedBytes
	// the other way.
	SentBytes     uint64 `json:"sentBytes"`
	ReceivedBytes uint64 `json:"receivedBytes"`
	// RTTMeanUs and ConnectMeanUs are the means of the samples, 0 without.
	RTTMeanUs     float64 `json:"rttMeanUs"`
	ConnectMeanUs float64 `json:"connectMeanUs"`
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
	Source     string `json:"source"`
	Generation int64  `json:"generation"`
	// GenerationApplied is when Generation was applied; LastApplied is
	// later when the same generation was applied again (pods' cgroups
	// appeared).
	GenerationApplied time.Time      `json:"generationApplied"`
	LastApplied       time.Time      `json:"lastApplied"`
	Objects           map[string]int `json:"objects"`
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
	TunnelConns   int64 `json:"tunnelConnections"`
	TunnelRefused int64 `json:"tunnelRefused"`
	AuthzAllowed  int64 `json:"authzAllowed"`
	AuthzDenied   int64 `json:"authzDenied"`
}

// CertSummary summarizes the workload certificates held by the agent.
type CertSummary struct {
	Count      int       `json:"count"`
	Missing    int       `json:"missing"`
	NextExpiry time.Time `json:"nextExpiry,omitzero"`
	Issued     int64     `json:"issued"`
	Failed     int64     `json:"failed"`
	Roots      int       `json:"roots"`
}

// Certificate is a workload certificate held by the agent, as GET /v1/certs
// lists them. A wanted identity without one has a zero NotAfter.
type Certificate struct {
	Identity  string    `json:"identity"`
	Serial    string    `json:"serial,omitempty"`
	Issuer    string    `json:"issuer,omitempty"`
	NotBefore time.Time `json:"notBefore,omitzero"`
	NotAfter  time.Time `json:"notAfter,omitzero"`
	RenewAt   time.Time `json:"renewAt,omitzero"`
}

// Certs is the answer to GET /v1/certs.
type Certs struct {
	// Enabled is false when the agent has no CA (no mTLS).
	Enabled      bool          `json:"enabled"`
	Certificates []Certificate `json:"certificates"`
	// Roots are the trust anchors: subject and expiry.
	Roots []Root `json:"roots"`
}

// Root is a trust anchor.
type Root struct {
	Subject  string    `json:"subject"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"notAfter"`
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
	// Mode is the pod's mTLS mode, STRICT or PERMISSIVE, when captured.
	Mode          string   `json:"mode,omitempty"`
	ExcludedPorts []uint16 `json:"excludedPorts,omitempty"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

// ServiceRoutes is the effective route table of one Service port, as GET
// /v1/routes lists it.
type ServiceRoutes struct {
	Service string       `json:"service"`
	Entries []RouteEntry `json:"entries"`
}

// RouteEntry is one match, in precedence order.
type RouteEntry struct {
	Clients  string `json:"clients"`
	Match    string `json:"match"`
	Route    string `json:"route"`
	Backends string `json:"backends"`
	Filters  string `json:"filters,omitempty"`
}

// RouteStatus is a route's computed status, per parent.
type RouteStatus struct {
	Kind      string         `json:"kind"`
	Namespace string         `json:"namespace"`
	Name      string         `json:"name"`
	Parents   []ParentStatus `json:"parents"`
}

// ParentStatus is the status of a route for one parentRef.
type ParentStatus struct {
	Parent     string      `json:"parent"`
	Conditions []Condition `json:"conditions"`
}

// Condition is a status condition.
type Condition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message,omitempty"`
}

// Routes is the answer to GET /v1/routes.
type Routes struct {
	Tables   []ServiceRoutes `json:"tables"`
	Statuses []RouteStatus   `json:"statuses"`
}

// ServiceEndpoints is a service port's endpoints as the balancer sees them.
type ServiceEndpoints struct {
	Service   string     `json:"service"`
	Policy    string     `json:"policy"`
	Endpoints []Endpoint `json:"endpoints"`
}

// Endpoint is one endpoint's health and load.
type Endpoint struct {
	Address      string    `json:"address"`
	Pod          string    `json:"pod,omitempty"`
	Node         string    `json:"node,omitempty"`
	Ejected      bool      `json:"ejected"`
	EjectedUntil time.Time `json:"ejectedUntil,omitzero"`
	// UnreachableUntil is set while the endpoint is left alone after its
	// connects failed; it is probed again then.
	UnreachableUntil time.Time `json:"unreachableUntil,omitzero"`
	EjectionsTotal   uint64    `json:"ejectionsTotal"`
	Consecutive5xx   int       `json:"consecutive5xx"`
	ConnectFails     int       `json:"consecutiveConnectFailures"`
	InFlight         int       `json:"inFlight"`
	EWMA             string    `json:"ewma"`
	Requests         uint64    `json:"requests"`
	Failures         uint64    `json:"failures"`
}

// Service is a Service port the proxy knows.
type Service struct {
	Service   string   `json:"service"`
	VIPs      []string `json:"vips"`
	Protocol  string   `json:"protocol"`
	Policy    string   `json:"policy"`
	Endpoints int      `json:"endpoints"`
	Routes    bool     `json:"routes"`
}

// TraceEvent is one line of GET /v1/trace: a kernel or proxy event with
// names resolved.
type TraceEvent struct {
	Time time.Time `json:"time"`
	// Type is capture, connect_fail, reset, retransmit, strict_drop,
	// policy_deny or state.
	Type string `json:"type"`
	// Reason details the type: a capture verdict, a reset direction, an
	// errno, a TCP state, the deciding policy.
	Reason    string `json:"reason,omitempty"`
	Pod       string `json:"pod,omitempty"` // namespace/name of the local pod concerned
	Workload  string `json:"workload,omitempty"`
	Src       string `json:"src,omitempty"`
	Dst       string `json:"dst,omitempty"`
	SrcPod    string `json:"srcPod,omitempty"`
	DstPod    string `json:"dstPod,omitempty"`
	Orig      string `json:"orig,omitempty"` // the address the app dialed
	Service   string `json:"service,omitempty"`
	Value     uint32 `json:"value,omitempty"`
	Principal string `json:"principal,omitempty"`
	// Lost, on a summary line (Type "lost"), counts events lost so far in
	// this session: in the kernel (ring buffer full) and in the agent (this
	// client too slow).
	LostKernel uint64 `json:"lostKernel,omitempty"`
	LostAgent  uint64 `json:"lostAgent,omitempty"`
	// Delivered counts the events sent to this client so far (summary lines).
	Delivered uint64 `json:"delivered,omitempty"`
}

// MapDump is the answer to GET /v1/bpf/maps/{name}.
type MapDump struct {
	Name    string     `json:"name"`
	Entries []MapEntry `json:"entries"`
}

// MapEntry is a decoded map entry; Note names what the key stands for.
type MapEntry struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	Note  string `json:"note,omitempty"`
}

// Program is also listed, with its run statistics, by GET /v1/bpf/progs.
type ProgramStats struct {
	Program
	Type     string `json:"type"`
	RunCount uint64 `json:"runCount"`
	// RunTimeNs is the total time spent in the program, when the kernel's
	// BPF statistics are enabled (kernel.bpf_stats_enabled).
	RunTimeNs uint64 `json:"runTimeNs"`
	// NsPerRun is RunTimeNs / RunCount.
	NsPerRun float64 `json:"nsPerRun"`
}

// Diagnosis is the answer to GET /v1/diagnose/{namespace}/{pod}: what the
// agent knows about a pod, for one-command troubleshooting.
type Diagnosis struct {
	Pod      string    `json:"pod"`
	Found    bool      `json:"found"`
	Local    bool      `json:"local"`
	Workload *Workload `json:"workload,omitempty"`
	// Captured and Why: is its traffic steered to the proxy, and why (not).
	Captured bool   `json:"captured"`
	Why      string `json:"why"`
	// Programs are the capture programs that see its sockets (attached to
	// the pod cgroup root its cgroup is under).
	Programs []string `json:"programs,omitempty"`
	// BPFMember is how the capture programs see its cgroup.
	BPFMember string `json:"bpfMember,omitempty"`
	// Services lists the Services it backs, and Routes the routes that
	// apply to its traffic (to those Services, or from its namespace).
	Services []string `json:"services,omitempty"`
	Routes   []string `json:"routes,omitempty"`
	// Policies are the AuthorizationPolicies that select it.
	Policies []string `json:"policies,omitempty"`
	// Certificate of its identity, if the agent holds one.
	Certificate *Certificate `json:"certificate,omitempty"`
	// Failures are its most recent failed requests and connections, as
	// source or destination.
	Failures []Failure `json:"failures,omitempty"`
	// Hints are what to look at next.
	Hints []string `json:"hints,omitempty"`
}

// Failure is a recent failed request or connection.
type Failure struct {
	Time   time.Time `json:"time"`
	What   string    `json:"what"` // "GET product.shop:80/x" or "tcp 10.96.0.10:80"
	Role   string    `json:"role"` // "source" or "destination"
	Peer   string    `json:"peer"`
	Code   int       `json:"code,omitempty"`
	Flags  string    `json:"flags"`
	Detail string    `json:"detail,omitempty"`
}

// LogQuery selects access-log entries, as GET /v1/logs takes them in its
// query string: workload=ns/name, trace=<id>, status=2xx|4xx|5xx|failed,
// since= and until= (RFC 3339, or a duration back from now such as 10m),
// limit=N (default 100, at most 10000).
type LogQuery struct {
	Workload string    `json:"workload,omitempty"`
	TraceID  string    `json:"trace,omitempty"`
	Status   string    `json:"status,omitempty"`
	Since    time.Time `json:"since,omitzero"`
	Until    time.Time `json:"until,omitzero"`
	Limit    int       `json:"limit,omitempty"`
}

// Logs is the answer to GET /v1/logs: the newest matching entries of the
// node's access-log store, oldest first.
type Logs struct {
	// Enabled is false when the agent keeps no access log (--accesslog-dir "").
	Enabled bool       `json:"enabled"`
	Dir     string     `json:"dir,omitempty"`
	Entries []LogEntry `json:"entries"`
	// Truncated says that more entries matched than the limit.
	Truncated bool `json:"truncated,omitempty"`
	// Scanned counts the lines read; Corrupt those that could not be read.
	Scanned int `json:"scanned"`
	Corrupt int `json:"corrupt,omitempty"`
}

// LogEntry is one access-log line: a request or a TCP connection as one
// proxy hop saw it. It has the fields, in the same order, of the agent's
// access-log entry (telemetry/accesslog.Entry), which converts to it.
type LogEntry struct {
	Start                    time.Time `json:"start_time"`
	DurationMS               float64   `json:"duration_ms"`
	Protocol                 string    `json:"protocol"`
	Reporter                 string    `json:"reporter"`
	TraceID                  string    `json:"trace_id,omitempty"`
	SpanID                   string    `json:"span_id,omitempty"`
	RequestID                string    `json:"request_id,omitempty"`
	SourceWorkload           string    `json:"source_workload,omitempty"`
	SourceNamespace          string    `json:"source_namespace,omitempty"`
	SourcePrincipal          string    `json:"source_principal,omitempty"`
	SourcePod                string    `json:"source_pod,omitempty"`
	DestinationWorkload      string    `json:"destination_workload,omitempty"`
	DestinationNamespace     string    `json:"destination_namespace,omitempty"`
	DestinationPrincipal     string    `json:"destination_principal,omitempty"`
	DestinationPod           string    `json:"destination_pod,omitempty"`
	DestinationService       string    `json:"destination_service,omitempty"`
	Route                    string    `json:"route,omitempty"`
	Method                   string    `json:"method,omitempty"`
	Authority                string    `json:"authority,omitempty"`
	Path                     string    `json:"path,omitempty"`
	ResponseCode             int       `json:"response_code,omitempty"`
	GRPCStatus               string    `json:"grpc_status,omitempty"`
	ResponseFlags            string    `json:"response_flags"`
	BytesReceived            int64     `json:"bytes_received"`
	BytesSent                int64     `json:"bytes_sent"`
	UpstreamHost             string    `json:"upstream_host,omitempty"`
	OriginalDst              string    `json:"original_dst,omitempty"`
	Attempts                 int       `json:"attempts,omitempty"`
	ConnectionSecurityPolicy string    `json:"connection_security_policy,omitempty"`
	Error                    string    `json:"error,omitempty"`
}
