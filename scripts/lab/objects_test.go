package lab

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// decodeCluster decodes cluster.yaml strictly, as the agent does: an
// unknown or mistyped field fails the test. It returns the objects by
// "Kind ns/name" and the documents it could not decode (extra objects).
func decodeCluster(t testing.TB, data []byte) (map[string]runtime.Object, []string) {
	t.Helper()
	scheme := runtime.NewScheme()
	require.NoError(t, corev1.AddToScheme(scheme))
	require.NoError(t, discoveryv1.AddToScheme(scheme))
	dec := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	objs := map[string]runtime.Object{}
	var other []string
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, other
		}
		require.NoError(t, err)
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, gvk, err := dec.Decode(doc, nil, nil)
		if err != nil && runtime.IsNotRegisteredError(err) {
			other = append(other, string(doc))
			continue
		}
		require.NoError(t, err, "document:\n%s", doc)
		m := obj.(interface {
			GetNamespace() string
			GetName() string
		})
		key := gvk.Kind + " " + m.GetNamespace() + "/" + m.GetName()
		require.NotContains(t, objs, key, "duplicate object")
		objs[key] = obj
	}
}

func planFor(t testing.TB, topology string) *state {
	t.Helper()
	topo, err := Parse([]byte(topology))
	require.NoError(t, err)
	st, err := plan(topo, "sklu")
	require.NoError(t, err)
	return st
}

func TestClusterObjects(t *testing.T) {
	st := planFor(t, baseTopology)
	st.Objects = []string{"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r\n  namespace: shop\n"}
	data, err := st.clusterYAML()
	require.NoError(t, err)
	objs, other := decodeCluster(t, data)

	t.Run("node", func(t *testing.T) {
		n := objs["Node /node-b"].(*corev1.Node)
		require.Equal(t, "10.244.2.0/24", n.Spec.PodCIDR)
		require.Equal(t, "node-b", n.Labels["kubernetes.io/hostname"])
		require.Contains(t, n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "192.168.77.2"})
		require.Contains(t, n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: "node-b"})
	})
	t.Run("namespaces and service accounts", func(t *testing.T) {
		ns := objs["Namespace /shop"].(*corev1.Namespace)
		require.Equal(t, "enabled", ns.Labels["skein.io/mesh"])
		require.NotContains(t, objs["Namespace /legacy"].(*corev1.Namespace).Labels, "skein.io/mesh")
		require.NotContains(t, objs, "Namespace /default", "default is written only when used")
		for _, sa := range []string{"shop/client", "shop/default", "legacy/default"} {
			require.Contains(t, objs, "ServiceAccount "+sa)
		}
	})
	t.Run("pod", func(t *testing.T) {
		p := objs["Pod shop/client"].(*corev1.Pod)
		require.Equal(t, PodUID("sklu", "shop", "client"), string(p.UID))
		require.Equal(t, "node-a", p.Spec.NodeName)
		require.Equal(t, "client", p.Spec.ServiceAccountName)
		require.Equal(t, map[string]string{"app": "client"}, p.Labels)
		require.Len(t, p.Spec.Containers, 1)
		require.Equal(t, "main", p.Spec.Containers[0].Name)
		require.Equal(t, "skein-lab", p.Spec.Containers[0].Image)
		require.Equal(t, corev1.PodRunning, p.Status.Phase)
		require.Equal(t, "10.244.1.10", p.Status.PodIP)
		require.Equal(t, []corev1.PodIP{{IP: "10.244.1.10"}}, p.Status.PodIPs)
		require.Equal(t, "192.168.77.1", p.Status.HostIP)
		require.Contains(t, p.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue})
		require.Equal(t, corev1.PodQOSBestEffort, p.Status.QOSClass)

		v2 := objs["Pod shop/product-v2"].(*corev1.Pod)
		require.Equal(t, []corev1.ContainerPort{{Name: "http", ContainerPort: 9090, Protocol: corev1.ProtocolTCP}}, v2.Spec.Containers[0].Ports)
		require.Equal(t, "default", v2.Spec.ServiceAccountName)
	})
	t.Run("service", func(t *testing.T) {
		s := objs["Service shop/product"].(*corev1.Service)
		require.Equal(t, corev1.ServiceTypeClusterIP, s.Spec.Type)
		require.Equal(t, "10.96.0.10", s.Spec.ClusterIP)
		require.Equal(t, []string{"10.96.0.10"}, s.Spec.ClusterIPs)
		require.Equal(t, map[string]string{"app": "product"}, s.Spec.Selector)
		require.Len(t, s.Spec.Ports, 1)
		sp := s.Spec.Ports[0]
		require.Equal(t, "http", sp.Name)
		require.Equal(t, int32(80), sp.Port)
		require.Equal(t, "http", sp.TargetPort.StrVal)
		require.Equal(t, corev1.ProtocolTCP, sp.Protocol)
		require.Equal(t, "http", *sp.AppProtocol)
		require.Nil(t, objs["Service shop/other"].(*corev1.Service).Spec.Ports[0].AppProtocol)
	})
	t.Run("endpoint slices resolve named target ports per pod", func(t *testing.T) {
		// product-v1 names http 8080, product-v2 names it 9090: two slices.
		a := objs["EndpointSlice shop/product-lab"].(*discoveryv1.EndpointSlice)
		b := objs["EndpointSlice shop/product-lab-2"].(*discoveryv1.EndpointSlice)
		require.Equal(t, "product", a.Labels[discoveryv1.LabelServiceName])
		require.Equal(t, discoveryv1.AddressTypeIPv4, a.AddressType)
		require.Equal(t, int32(8080), *a.Ports[0].Port)
		require.Equal(t, "http", *a.Ports[0].Name)
		require.Equal(t, "http", *a.Ports[0].AppProtocol)
		require.Equal(t, int32(9090), *b.Ports[0].Port)
		require.Len(t, a.Endpoints, 1)
		ep := a.Endpoints[0]
		require.Equal(t, []string{"10.244.1.11"}, ep.Addresses)
		require.True(t, *ep.Conditions.Ready)
		require.True(t, *ep.Conditions.Serving)
		require.False(t, *ep.Conditions.Terminating)
		require.Equal(t, "node-a", *ep.NodeName)
		require.Equal(t, corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "product-v1", UID: objs["Pod shop/product-v1"].(*corev1.Pod).UID}, *ep.TargetRef)
		require.Equal(t, []string{"10.244.2.10"}, b.Endpoints[0].Addresses)
	})
	t.Run("a service that selects nothing keeps an empty slice", func(t *testing.T) {
		s := objs["EndpointSlice shop/other-lab"].(*discoveryv1.EndpointSlice)
		require.Empty(t, s.Endpoints)
	})
	t.Run("extra objects are appended verbatim", func(t *testing.T) {
		require.Len(t, other, 1)
		require.Contains(t, other[0], "kind: HTTPRoute")
		require.True(t, strings.HasSuffix(string(data), st.Objects[0]))
	})
}

func TestEndpointSliceReadiness(t *testing.T) {
	st := planFor(t, baseTopology)
	notReady := false
	for _, p := range st.Pods {
		if p.Name == "product-v2" {
			p.Ready = &notReady
		}
	}
	// Same port for both pods: one slice, v1 ready, v2 not.
	st.Services[0].Ports[0].TargetPort.Type = 0
	st.Services[0].Ports[0].TargetPort.IntVal = 8080
	data, err := st.clusterYAML()
	require.NoError(t, err)
	objs, _ := decodeCluster(t, data)
	require.NotContains(t, objs, "EndpointSlice shop/product-lab-2")
	es := objs["EndpointSlice shop/product-lab"].(*discoveryv1.EndpointSlice)
	ready := map[string]bool{}
	for _, ep := range es.Endpoints {
		ready[ep.TargetRef.Name] = *ep.Conditions.Ready
		require.Equal(t, *ep.Conditions.Ready, *ep.Conditions.Serving)
	}
	require.Equal(t, map[string]bool{"product-v1": true, "product-v2": false}, ready)
	p := objs["Pod shop/product-v2"].(*corev1.Pod)
	require.Contains(t, p.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse})
}

func TestEndpointSliceMissingNamedPort(t *testing.T) {
	// A pod that lacks the named port is an endpoint without that port, in
	// a slice of its own, as the EndpointSlice controller does.
	st := planFor(t, strings.Replace(baseTopology, "ports: [{name: http, containerPort: 9090}]", "ports: [{name: grpc, containerPort: 9090}]", 1))
	objs, _ := decodeCluster(t, must(st.clusterYAML()))
	b := objs["EndpointSlice shop/product-lab-2"].(*discoveryv1.EndpointSlice)
	require.Empty(t, b.Ports)
	require.Equal(t, "product-v2", b.Endpoints[0].TargetRef.Name)
}

func TestDefaultNamespaceAndLabelValues(t *testing.T) {
	st := planFor(t, `
nodes: [{name: n1}]
pods:
  - name: p
    node: n1
    labels: {app: p, empty: ""}
    annotations: {note: ""}
`)
	data := must(st.clusterYAML())
	objs, _ := decodeCluster(t, data)
	require.Contains(t, objs, "Namespace /default")
	p := objs["Pod default/p"].(*corev1.Pod)
	require.Equal(t, map[string]string{"app": "p", "empty": ""}, p.Labels, "empty label values survive pruning")
	require.Equal(t, map[string]string{"note": ""}, p.Annotations)
	require.NotContains(t, string(data), "null", "zero values are pruned")
	require.NotContains(t, string(data), "nodeInfo")
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
