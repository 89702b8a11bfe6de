package agent

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/skeinmesh/skein/agent/cgroup"
	"github.com/skeinmesh/skein/agent/model"
	"github.com/skeinmesh/skein/bpf/capture"
	"github.com/skeinmesh/skein/l7proxy"
)

func pod(ns, name, node, ip, uid string, ann map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid), Annotations: ann, Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{NodeName: node, ServiceAccountName: name},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip},
	}
}

func testSnapshot() *model.Snapshot {
	s := model.NewSnapshot()
	s.Namespaces["shop"] = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{model.MeshLabel: model.MeshEnabled}}}
	s.Namespaces["legacy"] = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "legacy"}}
	for _, p := range []*corev1.Pod{
		pod("shop", "client", "node-a", "10.244.1.10", "uid-client", map[string]string{model.ExcludeOutboundPortsAnnotation: "3306"}),
		pod("shop", "product", "node-a", "10.244.1.11", "uid-product", nil),
		pod("shop", "remote", "node-b", "10.244.2.10", "uid-remote", nil),
		pod("shop", "optout", "node-a", "10.244.1.12", "uid-optout", map[string]string{model.MeshLabel: model.MeshDisabled}),
		pod("legacy", "outsider", "node-a", "10.244.1.13", "uid-outsider", nil),
		pod("shop", "late", "node-a", "10.244.1.14", "uid-late", nil), // no cgroup yet
	} {
		s.Pods[model.KeyOf(p)] = p
	}
	s.Services[model.Key{Namespace: "shop", Name: "product"}] = &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "product"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, AppProtocol: ptr.To("http")},
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
		}},
	}
	s.Services[model.Key{Namespace: "shop", Name: "headless"}] = &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "headless"},
		Spec:       corev1.ServiceSpec{ClusterIP: "None", Ports: []corev1.ServicePort{{Port: 80}}},
	}
	s.EndpointSlices[model.Key{Namespace: "shop", Name: "product-1"}] = &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "product-1", Labels: map[string]string{discoveryv1.LabelServiceName: "product"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.244.1.11"}, NodeName: ptr.To("node-a"), TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "product"}},
			{Addresses: []string{"10.244.2.10"}, NodeName: ptr.To("node-b"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"10.244.2.99"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
		},
	}
	return s
}

func TestBuild(t *testing.T) {
	d := build(testSnapshot(), buildInput{
		node: "node-a", trustDomain: "example.org",
		cgroups: map[string]cgroup.Pod{
			"uid-client":   {Path: "/cg/client", ID: 101},
			"uid-product":  {Path: "/cg/product", ID: 102},
			"uid-optout":   {Path: "/cg/optout", ID: 103},
			"uid-outsider": {Path: "/cg/outsider", ID: 104},
		},
	})

	require.Equal(t, map[uint64]capture.MemberFlags{101: capture.MemberMeshed, 102: capture.MemberMeshed, 103: 0, 104: 0}, d.capture.Members,
		"local pods with a cgroup; only the meshed ones flagged")

	// A namespace in STRICT mode marks its pods; the cluster default applies elsewhere.
	snap := testSnapshot()
	snap.Namespaces["shop"].Labels[model.MTLSModeLabel] = "strict"
	d2 := build(snap, buildInput{node: "node-a", trustDomain: "example.org", mode: model.ModePermissive,
		cgroups: map[string]cgroup.Pod{"uid-client": {Path: "/cg/client", ID: 101}}})
	require.Equal(t, capture.MemberMeshed|capture.MemberStrict, d2.capture.Members[101])
	require.Equal(t, map[uint64][]uint16{101: {3306}}, d.capture.ExcludedPorts)
	require.Equal(t, map[netip.AddrPort]capture.DstKind{
		netip.MustParseAddrPort("10.96.0.10:80"): capture.DstService,
		netip.MustParseAddrPort("10.244.1.10:0"): capture.DstPod,
		netip.MustParseAddrPort("10.244.1.11:0"): capture.DstPod,
		netip.MustParseAddrPort("10.244.2.10:0"): capture.DstPod,
		netip.MustParseAddrPort("10.244.1.14:0"): capture.DstPod,
	}, d.capture.Destinations, "service VIP TCP ports and meshed pod IPs; no UDP, no headless VIP, no unmeshed pods")

	svc := d.table.Services[netip.MustParseAddrPort("10.96.0.10:80")]
	require.NotNil(t, svc)
	require.Equal(t, l7proxy.ProtocolHTTP, svc.Protocol)
	require.Equal(t, "product.shop.svc.cluster.local", svc.Host)
	require.Len(t, svc.Endpoints, 2, "the not-ready endpoint is left out")
	require.Equal(t, netip.MustParseAddrPort("10.244.1.11:8080"), svc.Endpoints[0].Addr)
	require.Equal(t, "product", svc.Endpoints[0].Workload.Name)
	require.Equal(t, "node-b", svc.Endpoints[1].Node)

	client := d.byCgroup[101]
	require.Equal(t, "spiffe://example.org/ns/shop/sa/client", client.Identity)
	require.Same(t, client, d.table.Workloads[netip.MustParseAddr("10.244.1.10")])

	reasons := map[string]string{}
	for _, w := range d.local {
		reasons[w.Pod] = w.Reason
	}
	require.Equal(t, map[string]string{
		"client":   string(model.CaptureMeshed),
		"product":  string(model.CaptureMeshed),
		"optout":   string(model.CapturePodOptedOut),
		"outsider": string(model.CaptureNamespaceNotInMesh),
		"late":     `no cgroup found for pod UID "uid-late" yet`,
	}, reasons, "every local pod is listed with why it is or is not captured")
}
