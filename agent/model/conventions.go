package model

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

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

	// Outlier detection and circuit breaking of a Service's endpoints,
	// overriding the defaults (Envoy's): consecutive 5xx that eject an
	// endpoint, the base ejection time, and the most requests in flight
	// per endpoint.
	OutlierConsecutive5xxAnnotation = "skein.io/outlier-consecutive-5xx"
	OutlierBaseEjectionAnnotation   = "skein.io/outlier-base-ejection"
	MaxPendingAnnotation            = "skein.io/max-pending-requests"
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

// BalancerConfig reads a Service's load-balancing annotations. Errors name
// the annotation; the zero value of a missing one keeps the default.
func BalancerConfig(ann map[string]string) (balancer.Config, map[string]error) {
	var cfg balancer.Config
	errs := map[string]error{}
	if v, ok := ann[LBPolicyAnnotation]; ok {
		p, err := balancer.ParsePolicy(v)
		if err != nil {
			errs[LBPolicyAnnotation] = err
		}
		cfg.Policy = p
	}
	if v, ok := ann[OutlierConsecutive5xxAnnotation]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < -1 || n == 0 {
			errs[OutlierConsecutive5xxAnnotation] = fmt.Errorf("want a count of at least 1, or -1 to turn 5xx ejection off")
		}
		cfg.Outlier.Consecutive5xx = n
	}
	if v, ok := ann[OutlierBaseEjectionAnnotation]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs[OutlierBaseEjectionAnnotation] = fmt.Errorf("want a positive duration such as 30s")
		}
		cfg.Outlier.BaseEjection = d
	}
	if v, ok := ann[MaxPendingAnnotation]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			errs[MaxPendingAnnotation] = fmt.Errorf("want a count of at least 1")
		}
		cfg.Breaker.MaxPending = n
	}
	if len(errs) == 0 {
		if _, err := balancer.New(cfg, nil); err != nil {
			errs[LBPolicyAnnotation] = err
		}
	}
	return cfg, errs
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
