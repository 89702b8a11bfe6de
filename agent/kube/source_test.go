package kube

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"

	"github.com/skeinmesh/skein/agent/model"
	"github.com/skeinmesh/skein/agent/source"
)

// fakeCluster is a fake API server: typed fakes for the core and Gateway API
// objects, a dynamic fake for AuthorizationPolicies, and discovery that
// lists the optional APIs only when asked to.
type fakeCluster struct {
	kube    *kubefake.Clientset
	gateway *gatewayfake.Clientset
	dynamic *dynamicfake.FakeDynamicClient
	disco   *fakeDiscovery
}

// fakeDiscovery is client-go's fake discovery made safe to change while the
// source reads it.
type fakeDiscovery struct {
	*fakediscovery.FakeDiscovery
	mu sync.Mutex
}

func (d *fakeDiscovery) ServerResourcesForGroupVersion(gv string) (*metav1.APIResourceList, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.FakeDiscovery.ServerResourcesForGroupVersion(gv)
}

// kubeClient is the fake clientset with the safe discovery.
type kubeClient struct {
	*kubefake.Clientset
	disco *fakeDiscovery
}

func (c kubeClient) Discovery() discovery.DiscoveryInterfaces { return c.disco }

func newFakeCluster(t testing.TB, gatewayAPI, policies bool, objs ...runtime.Object) *fakeCluster {
	t.Helper()
	var core, gw, dyn []runtime.Object
	for _, o := range objs {
		switch o.(type) {
		case *gatewayv1.HTTPRoute, *gatewayv1.GRPCRoute:
			gw = append(gw, o)
		case *unstructured.Unstructured:
			dyn = append(dyn, o)
		default:
			core = append(core, o)
		}
	}
	f := &fakeCluster{
		kube:    kubefake.NewClientset(core...),
		gateway: gatewayfake.NewClientset(gw...),
		dynamic: dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
			map[schema.GroupVersionResource]string{AuthorizationPolicyResource: "AuthorizationPolicyList"}, dyn...),
	}
	f.disco = &fakeDiscovery{FakeDiscovery: f.kube.Discovery().(*fakediscovery.FakeDiscovery)}
	f.serve(gatewayAPI, policies)
	return f
}

// serve sets which optional APIs discovery lists.
func (f *fakeCluster) serve(gatewayAPI, policies bool) {
	var res []*metav1.APIResourceList
	if gatewayAPI {
		res = append(res, &metav1.APIResourceList{GroupVersion: gatewayv1.GroupVersion.String(), APIResources: []metav1.APIResource{
			{Name: "httproutes", Kind: "HTTPRoute", Namespaced: true},
			{Name: "grpcroutes", Kind: "GRPCRoute", Namespaced: true},
		}})
	}
	if policies {
		res = append(res, &metav1.APIResourceList{GroupVersion: AuthorizationPolicyResource.GroupVersion().String(), APIResources: []metav1.APIResource{
			{Name: "authorizationpolicies", Kind: "AuthorizationPolicy", Namespaced: true},
		}})
	}
	f.disco.mu.Lock()
	defer f.disco.mu.Unlock()
	f.disco.Resources = res
}

func (f *fakeCluster) clients() *Clients {
	return &Clients{Kube: kubeClient{Clientset: f.kube, disco: f.disco}, Gateway: f.gateway, Dynamic: f.dynamic}
}

// running is a source under test with the updates it delivered.
type running struct {
	t       testing.TB
	src     *Source
	updates chan source.Update
	logs    *observer.ObservedLogs
}

func startSource(t testing.TB, f *fakeCluster, cfg Config) *running {
	t.Helper()
	cfg.Clients = f.clients()
	if cfg.Debounce == 0 {
		cfg.Debounce = 10 * time.Millisecond
	}
	core, logs := observer.New(zap.DebugLevel)
	src, err := New(cfg, zap.New(core))
	require.NoError(t, err)
	r := &running{t: t, src: src, updates: make(chan source.Update, 100), logs: logs}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		require.NoError(t, src.Run(ctx, func(u source.Update) { r.updates <- u }))
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return r
}

// next returns the next update, failing after 5s.
func (r *running) next() source.Update {
	r.t.Helper()
	select {
	case u := <-r.updates:
		return u
	case <-time.After(5 * time.Second):
		r.t.Fatal("no update within 5s")
		return source.Update{}
	}
}

// until returns the first update for which ok holds, failing after 5s.
func (r *running) until(ok func(*model.Snapshot) bool) *model.Snapshot {
	r.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case u := <-r.updates:
			snap, errs := model.Merge(nil, u.Objects)
			require.Empty(r.t, errs)
			if ok(snap) {
				return snap
			}
		case <-deadline:
			r.t.Fatal("no matching update within 5s")
			return nil
		}
	}
}

func namespace(name string, enrolled bool) *corev1.Namespace {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if enrolled {
		ns.Labels = map[string]string{model.MeshLabel: model.MeshEnabled}
	}
	return ns
}

func pod(ns, name, node, ip string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), ResourceVersion: "1", Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: name, Containers: []corev1.Container{{
			Name: "app", Image: "example/app:1", Env: []corev1.EnvVar{{Name: "BIG", Value: "x"}},
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, HostIP: "192.168.77.1",
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "example/app:1"}}},
	}
}

func service(ns, name, ip string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: "1"},
		Spec: corev1.ServiceSpec{ClusterIP: ip, ClusterIPs: []string{ip}, Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
}

func slice(ns, svc string, ips ...string) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svc + "-abc", ResourceVersion: "1", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}},
	}
	for _, ip := range ips {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}})
	}
	return es
}

func httpRoute(ns, name, parent, backend string) *gatewayv1.HTTPRoute {
	kind := gatewayv1.Kind("Service")
	group := gatewayv1.Group("")
	return &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: "1"},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Group: &group, Kind: &kind, Name: gatewayv1.ObjectName(parent)}}},
			Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
				BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(backend), Port: ptr(gatewayv1.PortNumber(80))},
			}}}}},
		},
	}
}

func policy(ns, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "security.istio.io/v1",
		"kind":       "AuthorizationPolicy",
		"metadata": map[string]any{
			"namespace": ns, "name": name, "resourceVersion": "1",
			"annotations": map[string]any{LastAppliedAnnotation: `{"big":"copy"}`},
		},
		"spec": spec,
	}}
	return u
}

func ptr[T any](v T) *T { return &v }

func TestSourceDeliversCompleteSetAfterSync(t *testing.T) {
	f := newFakeCluster(t, true, true,
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}},
		namespace("shop", true),
		pod("shop", "product", "node-a", "10.244.1.10"),
		service("shop", "product", "10.96.0.10"),
		slice("shop", "product", "10.244.1.10"),
		httpRoute("shop", "product", "product", "product"),
		policy("shop", "allow-client", map[string]any{"action": "ALLOW", "rules": []any{map[string]any{
			"from": []any{map[string]any{"source": map[string]any{"principals": []any{"cluster.local/ns/shop/sa/client"}}}},
		}}}),
	)
	r := startSource(t, f, Config{})
	u := r.next()
	require.True(t, r.src.HasSynced(), "synced before the first delivery returns")
	require.NoError(t, r.src.WaitForSync(context.Background()))
	snap, errs := model.Merge(nil, u.Objects)
	require.Empty(t, errs)
	require.Empty(t, u.Errors)
	require.Equal(t, map[string]int{
		"Node": 1, "Namespace": 1, "Pod": 1, "Service": 1, "EndpointSlice": 1,
		"HTTPRoute": 1, "GRPCRoute": 0, "AuthorizationPolicy": 1,
	}, snap.Counts())
	ap := snap.AuthorizationPolicies[model.Key{Namespace: "shop", Name: "allow-client"}]
	require.NotNil(t, ap)
	require.Equal(t, []string{"cluster.local/ns/shop/sa/client"}, ap.Spec.Rules[0].From[0].Source.Principals)
	require.Empty(t, ap.Annotations, "the last-applied copy is stripped")
}

func TestSourceEventsDeliverCompleteObjects(t *testing.T) {
	ctx := context.Background()
	f := newFakeCluster(t, true, false, namespace("shop", true), service("shop", "product", "10.96.0.10"))
	r := startSource(t, f, Config{})
	r.next()

	tests := []struct {
		name   string
		change func(t *testing.T)
		want   func(*model.Snapshot) bool
	}{
		{
			name: "pod added",
			change: func(t *testing.T) {
				_, err := f.kube.CoreV1().Pods("shop").Create(ctx, pod("shop", "product-v1", "node-a", "10.244.1.10"), metav1.CreateOptions{})
				require.NoError(t, err)
			},
			want: func(s *model.Snapshot) bool {
				p := s.Pods[model.Key{Namespace: "shop", Name: "product-v1"}]
				// The service added before the event is still in the set:
				// every update is complete, not a delta.
				return p != nil && p.Status.PodIP == "10.244.1.10" && len(s.Services) == 1 && len(s.Namespaces) == 1
			},
		},
		{
			name: "endpoint slice added",
			change: func(t *testing.T) {
				_, err := f.kube.DiscoveryV1().EndpointSlices("shop").Create(ctx, slice("shop", "product", "10.244.1.10"), metav1.CreateOptions{})
				require.NoError(t, err)
			},
			want: func(s *model.Snapshot) bool { return len(s.EndpointSlices) == 1 && len(s.Pods) == 1 },
		},
		{
			name: "route added",
			change: func(t *testing.T) {
				_, err := f.gateway.GatewayV1().HTTPRoutes("shop").Create(ctx, httpRoute("shop", "r", "product", "product"), metav1.CreateOptions{})
				require.NoError(t, err)
			},
			want: func(s *model.Snapshot) bool { return len(s.HTTPRoutes) == 1 },
		},
		{
			name: "pod status changed",
			change: func(t *testing.T) {
				p := pod("shop", "product-v1", "node-a", "10.244.1.11")
				p.ResourceVersion = "2"
				_, err := f.kube.CoreV1().Pods("shop").UpdateStatus(ctx, p, metav1.UpdateOptions{})
				require.NoError(t, err)
			},
			want: func(s *model.Snapshot) bool {
				p := s.Pods[model.Key{Namespace: "shop", Name: "product-v1"}]
				return p != nil && p.Status.PodIP == "10.244.1.11"
			},
		},
		{
			name: "pod deleted",
			change: func(t *testing.T) {
				require.NoError(t, f.kube.CoreV1().Pods("shop").Delete(ctx, "product-v1", metav1.DeleteOptions{}))
			},
			want: func(s *model.Snapshot) bool {
				return len(s.Pods) == 0 && len(s.Services) == 1 && len(s.HTTPRoutes) == 1
			},
		},
		{
			name: "namespace unenrolled",
			change: func(t *testing.T) {
				_, err := f.kube.CoreV1().Namespaces().Update(ctx, namespace("shop", false), metav1.UpdateOptions{})
				require.NoError(t, err)
			},
			want: func(s *model.Snapshot) bool { return !model.NamespaceEnrolled(s.Namespaces["shop"]) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.change(t)
			r.until(tt.want)
		})
	}
}

func TestSourceDebouncesBursts(t *testing.T) {
	ctx := context.Background()
	f := newFakeCluster(t, true, true)
	r := startSource(t, f, Config{Debounce: 200 * time.Millisecond, MaxDelay: 2 * time.Second})
	r.next()
	before := r.src.Deliveries()
	for i := range 50 {
		_, err := f.kube.CoreV1().Services("default").Create(ctx, service("default", "s"+string(rune('a'+i%26))+string(rune('a'+i/26)), "10.96.1.1"), metav1.CreateOptions{})
		require.NoError(t, err)
	}
	snap := r.until(func(s *model.Snapshot) bool { return len(s.Services) == 50 })
	require.Len(t, snap.Services, 50)
	require.LessOrEqual(t, r.src.Deliveries()-before, int64(3), "a burst of 50 events is delivered in a few updates, not 50")
}

func TestSourceToleratesMissingPolicyCRD(t *testing.T) {
	ctx := context.Background()
	f := newFakeCluster(t, true, false, namespace("shop", true))
	r := startSource(t, f, Config{DiscoveryInterval: 50 * time.Millisecond})
	u := r.next()
	snap, _ := model.Merge(nil, u.Objects)
	require.Len(t, snap.Namespaces, 1, "the source syncs and delivers without the CRD")
	missing := r.logs.FilterMessage("API not served; carrying on without it").FilterField(zap.String("kind", "AuthorizationPolicy"))
	require.Equal(t, 1, missing.Len())

	// Checks keep finding it missing: still logged once.
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, 1, r.logs.FilterMessage("API not served; carrying on without it").FilterField(zap.String("kind", "AuthorizationPolicy")).Len())

	// The CRD gets installed and a policy created: the source picks it up.
	_, err := f.dynamic.Resource(AuthorizationPolicyResource).Namespace("shop").Create(ctx,
		policy("shop", "deny-all", map[string]any{"action": "DENY", "rules": []any{map[string]any{}}}), metav1.CreateOptions{})
	require.NoError(t, err)
	f.serve(true, true)
	r.until(func(s *model.Snapshot) bool { return len(s.AuthorizationPolicies) == 1 })

	// And the CRD goes away again: its objects leave the set.
	f.serve(true, false)
	r.until(func(s *model.Snapshot) bool { return len(s.AuthorizationPolicies) == 0 && len(s.Namespaces) == 1 })
}

func TestSourceToleratesMissingGatewayAPI(t *testing.T) {
	f := newFakeCluster(t, false, false, namespace("shop", true))
	r := startSource(t, f, Config{})
	u := r.next()
	snap, _ := model.Merge(nil, u.Objects)
	require.Len(t, snap.Namespaces, 1)
	require.Equal(t, 1, r.logs.FilterMessage("API not served; carrying on without it").FilterField(zap.String("kind", "HTTPRoute")).Len())
}

func TestSourceRejectsInvalidPolicyKeepingTheRest(t *testing.T) {
	f := newFakeCluster(t, true, true, namespace("shop", true),
		policy("shop", "typo", map[string]any{"acton": "DENY"}),
		policy("shop", "good", map[string]any{"action": "DENY"}),
	)
	r := startSource(t, f, Config{})
	u := r.next()
	var bad []model.Object
	for _, o := range u.Objects {
		if o.Err != nil {
			bad = append(bad, o)
		}
	}
	require.Len(t, bad, 1)
	require.Equal(t, "AuthorizationPolicy shop/typo", bad[0].Ref.String())
	require.ErrorContains(t, bad[0].Err, `unknown field "spec.acton"`)
	snap, errs := model.Merge(nil, u.Objects)
	require.Len(t, errs, 1)
	require.Contains(t, snap.AuthorizationPolicies, model.Key{Namespace: "shop", Name: "good"})
}

func TestSourceReadinessWaitsForSync(t *testing.T) {
	f := newFakeCluster(t, true, true)
	cfg := Config{Clients: f.clients()}
	src, err := New(cfg, zap.NewNop())
	require.NoError(t, err)
	require.False(t, src.HasSynced())
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.Error(t, src.WaitForSync(ctx), "not synced before Run")
}

func TestNewValidates(t *testing.T) {
	f := newFakeCluster(t, true, true)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "nothing", cfg: Config{}, want: "set exactly one"},
		{name: "two", cfg: Config{Kubeconfig: "/x", InCluster: true}, want: "set exactly one"},
		{name: "partial clients", cfg: Config{Clients: &Clients{Kube: f.kube}}, want: "Kube, Gateway and Dynamic"},
		{name: "negative", cfg: Config{Clients: f.clients(), Debounce: -1}, want: "negative"},
		{name: "missing kubeconfig", cfg: Config{Kubeconfig: "/nonexistent/kubeconfig"}, want: "load kubeconfig /nonexistent/kubeconfig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, zap.NewNop())
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestRunTwice(t *testing.T) {
	f := newFakeCluster(t, true, true)
	r := startSource(t, f, Config{})
	r.next()
	require.ErrorIs(t, r.src.Run(context.Background(), func(source.Update) {}), ErrRunning)
}
