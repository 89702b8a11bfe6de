package model

import (
	"errors"

	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func svc(name, ip string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
		Spec:       corev1.ServiceSpec{ClusterIP: ip, Ports: ports},
	}
}

func TestValidate(t *testing.T) {
	http := corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}
	cases := []struct {
		name      string
		obj       any
		wantField string // "" means valid
	}{
		{"valid service", svc("product", "10.96.0.10", http), ""},
		{"bad cluster ip", svc("product", "10.96.0.300", http), "spec.clusterIP"},
		{"port out of range", svc("product", "10.96.0.10", corev1.ServicePort{Name: "x", Port: 70000}), "spec.ports[0].port"},
		{"unnamed ports", svc("product", "10.96.0.10", corev1.ServicePort{Port: 80}, corev1.ServicePort{Port: 81}), "spec.ports[0].name"},
		{"unknown app protocol", svc("product", "10.96.0.10", corev1.ServicePort{Name: "x", Port: 80, AppProtocol: ptr.To("quic")}), "spec.ports[0].appProtocol"},
		{"headless is valid", svc("product", "None", http), ""},
		{"missing namespace", &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, "metadata.namespace"},
		{"bad name", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "Shop_1"}}, "metadata.name"},
		{"bad mesh label", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{MeshLabel: "yes"}}}, "metadata.labels[skein.io/mesh]"},
		{"bad excluded ports", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop",
			Annotations: map[string]string{ExcludeOutboundPortsAnnotation: "3306,abc"}}}, "metadata.annotations[skein.io/exclude-outbound-ports]"},
		{"bad pod ip", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop"}, Status: corev1.PodStatus{PodIP: "10.1"}}, "status.podIP"},
		{"slice without service label", &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "shop"},
			AddressType: discoveryv1.AddressTypeIPv4}, "metadata.labels[kubernetes.io/service-name]"},
		{"slice with v6 address in v4 slice", &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "s", Namespace: "shop", Labels: map[string]string{discoveryv1.LabelServiceName: "x"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"fd00::1"}}},
		}, "endpoints[0].addresses[0]"},
		{"policy with unsupported action", &AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop"},
			Spec: AuthorizationPolicySpec{Action: "CUSTOM"}}, "spec.action"},
		{"policy with bad port", &AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop"},
			Spec: AuthorizationPolicySpec{Rules: []AuthorizationRule{{To: []RuleTo{{Operation: Operation{Ports: []string{"http"}}}}}}}}, "spec.rules[0].to[0].operation.ports[0]"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			errs := Validate(tt.obj.(runtime.Object))
			if tt.wantField == "" {
				require.Empty(t, errs)
				return
			}
			require.NotEmpty(t, errs)
			require.Equal(t, tt.wantField, errs[0].Field, "%v", errs)
		})
	}
}

func TestMergeKeepsLastGood(t *testing.T) {
	http := corev1.ServicePort{Name: "http", Port: 80}
	good := svc("product", "10.96.0.10", http)
	other := svc("profile", "10.96.0.11", http)
	prev, errs := Merge(nil, []Object{{Obj: good}, {Obj: other}})
	require.Empty(t, errs)

	bad := svc("product", "not-an-ip", http)
	next, errs := Merge(prev, []Object{{Obj: bad, Origin: "cluster.yaml document 2"}, {Obj: svc("profile", "10.96.0.12", http)}})
	require.Len(t, errs, 1)
	require.Contains(t, errs[0].Error(), "Service shop/product: spec.clusterIP")
	require.Contains(t, errs[0].Error(), "cluster.yaml document 2")
	require.Equal(t, "10.96.0.10", next.Services[Key{"shop", "product"}].Spec.ClusterIP, "last good version kept")
	require.Equal(t, "10.96.0.12", next.Services[Key{"shop", "profile"}].Spec.ClusterIP, "valid change applied")

	// An object the source could not decode keeps its last good version too.
	next, errs = Merge(prev, []Object{{Err: errUnknownField, Ref: Ref{Kind: "Service", Key: Key{"shop", "product"}}, Origin: "x"}})
	require.Len(t, errs, 1)
	require.Contains(t, errs[0].Error(), "unknown field")
	require.Contains(t, next.Services, Key{"shop", "product"})
	require.NotContains(t, next.Services, Key{"shop", "profile"}, "objects gone from the source are deleted")

	// A new object that is invalid has no last good version: it is left out.
	next, errs = Merge(nil, []Object{{Obj: bad}})
	require.Len(t, errs, 1)
	require.Empty(t, next.Services)

	// Duplicates are rejected.
	_, errs = Merge(nil, []Object{{Obj: good, Origin: "a"}, {Obj: good, Origin: "b"}})
	require.Len(t, errs, 1)
	require.Contains(t, errs[0].Error(), "also defined in a")
}

var errUnknownField = errors.New(`unknown field "spec.portz"`)

func TestPodCapture(t *testing.T) {
	s := NewSnapshot()
	s.Namespaces["shop"] = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{MeshLabel: MeshEnabled}}}
	s.Namespaces["legacy"] = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "legacy"}}
	pod := func(ns string, ann map[string]string, hostNet bool) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns, Annotations: ann},
			Spec: corev1.PodSpec{HostNetwork: hostNet}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		want CaptureReason
	}{
		{"enrolled", pod("shop", nil, false), CaptureMeshed},
		{"namespace not enrolled", pod("legacy", nil, false), CaptureNamespaceNotInMesh},
		{"unknown namespace", pod("nowhere", nil, false), CaptureNamespaceNotInMesh},
		{"opted out", pod("shop", map[string]string{MeshLabel: MeshDisabled}, false), CapturePodOptedOut},
		{"host network", pod("shop", nil, true), CaptureHostNetwork},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, why := s.PodCapture(tt.pod)
			require.Equal(t, tt.want, why)
			require.Equal(t, tt.want == CaptureMeshed, ok)
		})
	}
}

func TestWorkloadName(t *testing.T) {
	ctl := ptr.To(true)
	tests := []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"deployment", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "product-7d9f-x2", Labels: map[string]string{"pod-template-hash": "7d9f"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "product-7d9f", Controller: ctl}}}}, "product"},
		{"statefulset", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db-0",
			OwnerReferences: []metav1.OwnerReference{{Kind: "StatefulSet", Name: "db", Controller: ctl}}}}, "db"},
		{"cronjob", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "backup-28000000-abc",
			OwnerReferences: []metav1.OwnerReference{{Kind: "Job", Name: "backup-28000000", Controller: ctl}}}}, "backup"},
		{"app label", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "client", Labels: map[string]string{"app": "shopper"}}}, "shopper"},
		{"bare pod", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "client"}}, "client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, WorkloadName(tt.pod))
		})
	}
}

func TestParsePorts(t *testing.T) {
	got, err := ParsePorts(" 3306, 6379,")
	require.NoError(t, err)
	require.Equal(t, []uint16{3306, 6379}, got)
	for _, bad := range []string{"0", "65536", "x", "80-90"} {
		_, err := ParsePorts(bad)
		require.Error(t, err, bad)
	}
}
