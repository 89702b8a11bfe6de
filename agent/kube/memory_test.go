package kube

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skeinmesh/skein/agent/source"
)

// largeCluster generates n Services, each with one EndpointSlice of three
// endpoints, shaped like what a real API server returns for objects applied
// with kubectl: managedFields for two managers and the last-applied copy.
func largeCluster(n int) []k8sruntime.Object {
	objs := make([]k8sruntime.Object, 0, 2*n+1)
	objs = append(objs, namespace("bench", true))
	fields := func(manager string) metav1.ManagedFieldsEntry {
		return metav1.ManagedFieldsEntry{
			Manager: manager, Operation: metav1.ManagedFieldsOperationApply, APIVersion: "v1",
			Time:     &metav1.Time{Time: time.Unix(1700000000, 0)},
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:annotations":{".":{},"f:kubectl.kubernetes.io/last-applied-configuration":{}},"f:labels":{".":{},"f:app":{},"f:team":{}}},"f:spec":{"f:internalTrafficPolicy":{},"f:ports":{".":{},"k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:name":{},"f:port":{},"f:protocol":{},"f:targetPort":{}},"k:{\"port\":9090,\"protocol\":\"TCP\"}":{".":{},"f:name":{},"f:port":{},"f:protocol":{},"f:targetPort":{}}},"f:selector":{},"f:sessionAffinity":{},"f:type":{}}}`)},
		}
	}
	for i := range n {
		name := fmt.Sprintf("svc-%05d", i)
		ip := fmt.Sprintf("10.96.%d.%d", 1+i/250, 1+i%250)
		labels := map[string]string{"app": name, "team": "payments"}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: "bench", Name: name, UID: types.UID(fmt.Sprintf("00000000-0000-0000-0000-%012d", i)), ResourceVersion: fmt.Sprint(1000 + i),
				Labels:        labels,
				Annotations:   map[string]string{LastAppliedAnnotation: `{"apiVersion":"v1","kind":"Service","metadata":{"annotations":{},"labels":{"app":"` + name + `","team":"payments"},"name":"` + name + `","namespace":"bench"},"spec":{"ports":[{"name":"http","port":80,"targetPort":8080},{"name":"metrics","port":9090}],"selector":{"app":"` + name + `"}}}`},
				ManagedFields: []metav1.ManagedFieldsEntry{fields("kubectl-client-side-apply"), fields("kube-controller-manager")},
			},
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeClusterIP, ClusterIP: ip, ClusterIPs: []string{ip}, Selector: map[string]string{"app": name},
				IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}, SessionAffinity: corev1.ServiceAffinityNone,
				Ports: []corev1.ServicePort{
					{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
					{Name: "metrics", Port: 9090, TargetPort: intstr.FromInt32(9090), Protocol: corev1.ProtocolTCP},
				},
			},
		}
		es := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: "bench", Name: name + "-x7k2p", ResourceVersion: fmt.Sprint(20000 + i),
				Labels: map[string]string{
					discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io",
					"app": name, "team": "payments",
				},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: name, UID: svc.UID}},
				ManagedFields:   []metav1.ManagedFieldsEntry{fields("endpointslice-controller.k8s.io")},
			},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports: []discoveryv1.EndpointPort{
				{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)},
				{Name: ptr("metrics"), Port: ptr(int32(9090)), Protocol: ptr(corev1.ProtocolTCP)},
			},
		}
		for j := range 3 {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{fmt.Sprintf("10.%d.%d.%d", 100+j, i/250, 1+i%250)},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)},
				NodeName:   ptr(fmt.Sprintf("node-%03d", (i+j)%200)),
				Zone:       ptr("zone-a"),
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "bench", Name: fmt.Sprintf("%s-%d-abcde", name, j), UID: types.UID(fmt.Sprintf("10000000-0000-0000-0000-%06d%06d", i, j))},
			})
		}
		objs = append(objs, svc, es)
	}
	return objs
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	var m runtime.MemStats
	for range 2 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// cacheHeap starts a source on a fake cluster of n Services and returns
// how much the heap grew by the time the first complete set was delivered
// (the informers' caches plus the delivered object list), and how many
// objects were delivered.
func cacheHeap(t testing.TB, n int, strip bool) (uint64, int) {
	f := newFakeCluster(t, true, true, largeCluster(n)...)
	src, err := New(Config{Clients: f.clients()}, zap.NewNop())
	require.NoError(t, err)
	if !strip {
		for _, w := range src.kinds {
			w.transform = func(o any) (any, error) { return o, nil }
		}
	}
	base := heapInUse()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan source.Update, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = src.Run(ctx, func(u source.Update) {
			select {
			case got <- u:
			default:
			}
		})
	}()
	var u source.Update
	select {
	case u = <-got:
	case <-time.After(2 * time.Minute):
		t.Fatal("no initial sync within 2 minutes")
	}
	grown := heapInUse() - base
	cancel()
	<-done
	runtime.KeepAlive(f)
	return grown, len(u.Objects)
}

// TestMemory10kServices bounds the source's memory on a cluster of 10,000
// Services and 10,000 EndpointSlices, and shows what stripping saves.
// go test -run TestMemory10kServices -v ./agent/kube/ prints the figures.
func TestMemory10kServices(t *testing.T) {
	if testing.Short() {
		t.Skip("generates 20,000 objects")
	}
	const n = 10000
	stripped, count := cacheHeap(t, n, true)
	require.Equal(t, 2*n+1, count)
	full, _ := cacheHeap(t, n, false)
	t.Logf("heap for %d Services + %d EndpointSlices: %.1f MiB stripped (%.0f B/object pair), %.1f MiB without the transform",
		n, n, mib(stripped), float64(stripped)/n, mib(full))
	require.Less(t, stripped, uint64(64<<20), "the caches of 10k Services + EndpointSlices stay under 64 MiB")
	require.Less(t, stripped, full*3/4, "stripping managedFields and last-applied saves at least a quarter")
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// BenchmarkInitialSync10kServices measures the time to list and deliver
// 10,000 Services with their EndpointSlices, and reports the heap they take.
func BenchmarkInitialSync10kServices(b *testing.B) {
	for b.Loop() {
		grown, _ := cacheHeap(b, 10000, true)
		b.ReportMetric(mib(grown), "heap-MiB")
	}
}
