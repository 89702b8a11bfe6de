package l7proxy

import (
	"net/netip"
	"sync"

	"github.com/skeinmesh/skein/l7proxy/balancer"
	"github.com/skeinmesh/skein/l7proxy/route"
)

// Workload is a pod as the proxy sees it: for routing, authorization,
// metrics and logs.
type Workload struct {
	// Name is the workload (Deployment, StatefulSet, ...) the pod belongs to.
	Name      string
	Namespace string
	// Pod is the pod's name.
	Pod            string
	ServiceAccount string
	// Identity is the SPIFFE ID of the pod's service account.
	Identity string
	// Node is the node the pod runs on.
	Node string
	// Labels are the pod's labels.
	Labels map[string]string
	// Meshed says whether the pod is enrolled in the mesh.
	Meshed bool
}

// Protocol is how the proxy treats a service port.
type Protocol string

// Protocols of a service port.
const (
	ProtocolAuto  Protocol = ""      // detect from the first bytes
	ProtocolHTTP  Protocol = "http"  // HTTP/1.1
	ProtocolHTTP2 Protocol = "http2" // HTTP/2 cleartext, prior knowledge
	ProtocolGRPC  Protocol = "grpc"  // gRPC over HTTP/2 cleartext
	ProtocolTCP   Protocol = "tcp"   // opaque TCP
)

// Service is one port of a Kubernetes Service.
type Service struct {
	Namespace string
	Name      string
	// Host is the Service's cluster DNS name, <name>.<namespace>.svc.cluster.local.
	Host     string
	Port     uint16
	PortName string
	Protocol Protocol
	// Endpoints are the ready endpoints of this port.
	Endpoints []*Endpoint
	// Balancer configures load balancing (policy from the Service's
	// skein.io/lb-policy annotation).
	Balancer balancer.Config

	indexOnce sync.Once
	index     map[netip.AddrPort]*Endpoint
	// bal is set by Proxy.Update before the table is published.
	bal *balancer.Balancer
}

// Endpoint is one backend of a service port.
type Endpoint struct {
	Addr netip.AddrPort
	// Node is the node the endpoint's pod runs on.
	Node string
	// Workload is the endpoint's pod, nil if not known.
	Workload *Workload
}

// Table is everything the proxy needs to route. A Table is immutable once
// given to [Proxy.Update].
type Table struct {
	// Generation is the config generation the table was built from.
	Generation int64
	// Services by cluster IP and port.
	Services map[netip.AddrPort]*Service
	// ServicesByRef finds a service port by name, for route backends.
	ServicesByRef map[route.ServiceRef]*Service
	// Workloads by pod IP.
	Workloads map[netip.Addr]*Workload
	// Routes are the compiled HTTPRoutes and GRPCRoutes; nil: none.
	Routes *route.Table
	// LocalNode is the node this proxy runs on.
	LocalNode string
	// Nodes are the nodes' addresses, where their tunnels listen.
	Nodes map[string]netip.Addr
}
