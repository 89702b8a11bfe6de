package model

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/skeinmesh/skein/l7proxy/balancer"
)

// Enrollment: a namespace joins the mesh with the label skein.io/mesh=enabled;
// a pod in it opts out with the annotation skein.io/mesh=disabled.
const (
	MeshLabel    = "skein.io/mesh"
	MeshEnabled  = "enabled"
	MeshDisabled = "disabled"

	// ExcludeOutboundPortsAnnotation lists destination ports, comma
	// separated, whose connects from the pod bypass the mesh.
	ExcludeOutboundPortsAnnotation = "skein.io/exclude-outbound-ports"

	// MTLSModeLabel on a namespace overrides the cluster-wide mTLS mode
	// for its pods: STRICT or PERMISSIVE.
	MTLSModeLabel = "skein.io/mtls-mode"

	// LBPolicyAnnotation on a Service selects its load-balancing policy:
	// "p2c-ewma" (default), "round-robin" or "random".
	LBPolicyAnnotation = balancer.PolicyAnnotation
)

// mTLS modes.
const (
	ModePermissive = "PERMISSIVE"
	ModeStrict     = "STRICT"
)

// NamespaceMode returns a namespace's mTLS mode: its label if set, else the
// cluster-wide default.
func NamespaceMode(ns *corev1.Namespace, clusterDefault string) string {
	if ns != nil {
		switch strings.ToUpper(ns.Labels[MTLSModeLabel]) {
		case ModeStrict:
			return ModeStrict
		case ModePermissive:
			return ModePermissive
		}
	}
	return clusterDefault
}

// NamespaceEnrolled reports whether a namespace is in the mesh.
func NamespaceEnrolled(ns *corev1.Namespace) bool {
	return ns != nil && ns.Labels[MeshLabel] == MeshEnabled
}

// CaptureReason says why a pod is or is not captured.
type CaptureReason string

// Capture reasons, shown by agentctl.
const (
	CaptureMeshed             CaptureReason = "meshed"
	CaptureNamespaceNotInMesh CaptureReason = "namespace not enrolled (label skein.io/mesh=enabled)"
	CapturePodOptedOut        CaptureReason = "pod opted out (annotation skein.io/mesh=disabled)"
	CaptureHostNetwork        CaptureReason = "host network pod"
	CaptureNotRunning         CaptureReason = "pod not running"
)

// PodCapture reports whether the mesh captures a pod's traffic, and why.
func (s *Snapshot) PodCapture(p *corev1.Pod) (bool, CaptureReason) {
	switch {
	case p.Spec.HostNetwork:
		return false, CaptureHostNetwork
	case p.Status.Phase != "" && p.Status.Phase != corev1.PodRunning && p.Status.Phase != corev1.PodPending:
		return false, CaptureNotRunning
	case !NamespaceEnrolled(s.Namespaces[p.Namespace]):
		return false, CaptureNamespaceNotInMesh
	case p.Annotations[MeshLabel] == MeshDisabled:
		return false, CapturePodOptedOut
	}
	return true, CaptureMeshed
}

// PodIPs returns a pod's IPs.
func PodIPs(p *corev1.Pod) []netip.Addr {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	add := func(s string) {
		if a, err := netip.ParseAddr(s); err == nil && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	add(p.Status.PodIP)
	for _, ip := range p.Status.PodIPs {
		add(ip.IP)
	}
	return out
}

// ServiceAccount returns the pod's service account name ("default" if unset).
func ServiceAccount(p *corev1.Pod) string {
	if p.Spec.ServiceAccountName != "" {
		return p.Spec.ServiceAccountName
	}
	return "default"
}

// SPIFFEID returns the workload identity of a service account.
func SPIFFEID(trustDomain, namespace, serviceAccount string) string {
	return fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", trustDomain, namespace, serviceAccount)
}

// WorkloadName returns the name of the workload a pod belongs to, as Istio
// derives it: the Deployment behind a ReplicaSet, the StatefulSet, DaemonSet,
// Job or CronJob owning it; else the app.kubernetes.io/name or app label;
// else the pod name.
func WorkloadName(p *corev1.Pod) string {
	for _, o := range p.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		switch o.Kind {
		case "ReplicaSet":
			// name-<pod-template-hash>: the Deployment's name.
			if h := p.Labels["pod-template-hash"]; h != "" && strings.HasSuffix(o.Name, "-"+h) {
				return strings.TrimSuffix(o.Name, "-"+h)
			}
			if i := strings.LastIndex(o.Name, "-"); i > 0 {
				return o.Name[:i]
			}
			return o.Name
		case "Job":
			// CronJob jobs are named <cronjob>-<scheduled time>.
			if i := strings.LastIndex(o.Name, "-"); i > 0 && isDigits(o.Name[i+1:]) {
				return o.Name[:i]
			}
			return o.Name
		default:
			return o.Name
		}
	}
	if n := p.Labels["app.kubernetes.io/name"]; n != "" {
		return n
	}
	if n := p.Labels["app"]; n != "" {
		return n
	}
	return p.Name
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// AppProtocol is how the proxy treats a Service port.
type AppProtocol string

// Application protocols (Service port appProtocol values).
const (
	ProtocolUnknown AppProtocol = ""      // sniff the first bytes
	ProtocolHTTP    AppProtocol = "http"  // HTTP/1.1 (h2c upgrade allowed)
	ProtocolHTTP2   AppProtocol = "http2" // HTTP/2 cleartext, prior knowledge
	ProtocolGRPC    AppProtocol = "grpc"  // gRPC over HTTP/2 cleartext
	ProtocolTCP     AppProtocol = "tcp"   // opaque TCP, never sniffed
)

var appProtocols = map[string]AppProtocol{
	"http":              ProtocolHTTP,
	"http2":             ProtocolHTTP2,
	"h2c":               ProtocolHTTP2,
	"kubernetes.io/h2c": ProtocolHTTP2,
	"grpc":              ProtocolGRPC,
	"tcp":               ProtocolTCP,
	"https":             ProtocolTCP, // TLS from the app: opaque to the proxy
	"kubernetes.io/ws":  ProtocolHTTP,
	"kubernetes.io/wss": ProtocolTCP,
}

// ParseAppProtocol maps a Service port's appProtocol onto how the proxy
// treats it.
func ParseAppProtocol(s string) (AppProtocol, bool) {
	p, ok := appProtocols[strings.ToLower(s)]
	return p, ok
}

// KnownAppProtocols lists the appProtocol values the proxy understands.
func KnownAppProtocols() []string {
	return []string{"http", "http2", "h2c", "kubernetes.io/h2c", "grpc", "tcp", "https", "kubernetes.io/ws", "kubernetes.io/wss"}
}
