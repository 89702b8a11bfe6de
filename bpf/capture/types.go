package capture

import (
	"errors"
	"fmt"
	"net/netip"
)

// ErrNotFound is returned by [Datapath.Lookup] for a connection the capture
// programs did not redirect.
var ErrNotFound = errors.New("connection not captured")

// Settings are the proxy's coordinates and the failure mode.
type Settings struct {
	// Proxy4 is the IPv4 address of the outbound listener as a pod reaches
	// it. Invalid: IPv4 connects are not captured.
	Proxy4 netip.Addr
	// Proxy6 is the IPv6 address of the outbound listener. Invalid: IPv6
	// connects are not captured (IPv4-mapped ones still are).
	Proxy6 netip.Addr
	// ProxyPort is the outbound listener's port (15001).
	ProxyPort uint16
	// FailClosed refuses captured connects with EPERM while no proxy
	// listens, instead of letting them go to their original destination.
	FailClosed bool
}

// DstKind says why an address is a mesh destination.
type DstKind uint32

// Kinds of mesh destinations.
const (
	DstService DstKind = 1 << 0 // a Service VIP:port
	DstPod     DstKind = 1 << 1 // a meshed pod IP, any port (port 0)
)

// State is the desired content of the policy maps, computed by the agent
// from its model. Sync makes the maps equal to it.
type State struct {
	// Members are the pod cgroup ids of the node's meshed pods, with their
	// flags.
	Members map[uint64]MemberFlags
	// ExcludedPorts are destination ports, per pod cgroup, that bypass
	// capture (the pod's exclude-outbound-ports annotation).
	ExcludedPorts map[uint64][]uint16
	// Destinations are the mesh destinations; a pod IP has port 0.
	Destinations map[netip.AddrPort]DstKind
	// TrustedSources are the addresses the node proxy connects to pods
	// from: in STRICT mode the only sources of new inbound connections.
	TrustedSources []netip.Addr
}

// MemberFlags describe a meshed pod (struct member in capture.c).
type MemberFlags uint32

// Member flags.
const (
	MemberMeshed MemberFlags = 1 << 0
	// MemberStrict drops new inbound connections from outside the mesh.
	MemberStrict MemberFlags = 1 << 1
)

// Origin is what the capture programs recorded for a connection.
type Origin struct {
	// Dst is the destination the app dialed.
	Dst netip.AddrPort
	// CgroupID is the pod cgroup of the connecting socket.
	CgroupID uint64
}

// Verdict is the outcome of one capture decision.
type Verdict uint32

// Capture verdicts, as counted by the programs (enum verdict in capture.c).
const (
	VerdictRedirect     Verdict = 1
	VerdictNotMember    Verdict = 2
	VerdictLoopback     Verdict = 3
	VerdictExcludedPort Verdict = 4
	VerdictNotMeshDst   Verdict = 5
	VerdictFailOpen     Verdict = 6
	VerdictFailClosed   Verdict = 7
	VerdictNoProxyAddr  Verdict = 8
	VerdictNotTCP       Verdict = 9
	verdictMax          Verdict = 10
)

var verdictNames = [...]string{
	VerdictRedirect:     "redirected",
	VerdictNotMember:    "not_member",
	VerdictLoopback:     "loopback",
	VerdictExcludedPort: "excluded_port",
	VerdictNotMeshDst:   "not_mesh_destination",
	VerdictFailOpen:     "fail_open",
	VerdictFailClosed:   "fail_closed",
	VerdictNoProxyAddr:  "no_proxy_address",
	VerdictNotTCP:       "not_tcp",
}

func (v Verdict) String() string {
	if v > 0 && v < verdictMax {
		return verdictNames[v]
	}
	return fmt.Sprintf("verdict(%d)", uint32(v))
}
