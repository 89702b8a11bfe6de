package agent

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/skeinmesh/skein/agent/cgroup"
	"github.com/skeinmesh/skein/agent/model"
	"github.com/skeinmesh/skein/bpf/flow"
	"github.com/skeinmesh/skein/l7proxy"
	"github.com/skeinmesh/skein/telemetry"
)

// flowSnapshot is two nodes: client, local and the legacy pod on node-a,
// web-1 and web-2 (one workload) on node-b, and Services in front of them.
func flowSnapshot() *model.Snapshot {
	s := model.NewSnapshot()
	s.Namespaces["shop"] = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{model.MeshLabel: model.MeshEnabled}}}
	s.Namespaces["legacy"] = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "legacy"}}
	for i, n := range []string{"node-a", "node-b"} {
		s.Nodes[n] = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: []string{"192.168.77.1", "192.168.77.2"}[i]}}}}
	}
	web := func(name, ip string) *corev1.Pod {
		p := pod("shop", name, "node-b", ip, "uid-"+name, nil)
		p.Labels["app"] = "web"
		return p
	}
	for _, p := range []*corev1.Pod{
		pod("shop", "client", "node-a", "10.244.1.10", "uid-client", map[string]string{model.ExcludeOutboundPortsAnnotation: "3306"}),
		pod("shop", "local", "node-a", "10.244.1.11", "uid-local", nil),
		pod("legacy", "db", "node-a", "10.244.1.12", "uid-db", nil),
		web("web-1", "10.244.2.10"),
		web("web-2", "10.244.2.11"),
	} {
		s.Pods[model.KeyOf(p)] = p
	}
	svc := func(name, ip string, eps ...discoveryv1.Endpoint) {
		s.Services[model.Key{Namespace: "shop", Name: name}] = &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
			Spec:       corev1.ServiceSpec{ClusterIP: ip, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
		}
		s.EndpointSlices[model.Key{Namespace: "shop", Name: name}] = &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
			Endpoints:   eps,
		}
	}
	ep := func(pod, ip, node string) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{ip}, NodeName: ptr.To(node), TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: pod}}
	}
	svc("web", "10.96.0.20", ep("web-1", "10.244.2.10", "node-b"), ep("web-2", "10.244.2.11", "node-b"))
	svc("mixed", "10.96.0.21", ep("web-1", "10.244.2.10", "node-b"), ep("local", "10.244.1.11", "node-a"))
	svc("local", "10.96.0.22", ep("local", "10.244.1.11", "node-a"))
	svc("also-local", "10.96.0.23", ep("local", "10.244.1.11", "node-a"))
	svc("empty", "10.96.0.24")
	return s
}

func flowDerived() *derived {
	return build(flowSnapshot(), buildInput{node: "node-a", trustDomain: "cluster.local",
		trusted: []netip.Addr{netip.MustParseAddr("10.244.1.1"), netip.MustParseAddr("192.168.77.1")},
		cgroups: map[string]cgroup.Pod{
			"uid-client": {ID: 101}, "uid-local": {ID: 102}, "uid-db": {ID: 103},
		}})
}

func TestFlowLabels(t *testing.T) {
	d := flowDerived()
	ap := netip.MustParseAddrPort
	const (
		webHost   = "web.shop.svc.cluster.local"
		mixedHost = "mixed.shop.svc.cluster.local"
		localHost = "local.shop.svc.cluster.local"
	)
	src := func(dstSvc, dstWl, dstNs, policy string) telemetry.TCPLabels {
		return telemetry.TCPLabels{Reporter: "source", SourceWorkload: "client", SourceNamespace: "shop",
			DestinationService: dstSvc, DestinationWorkload: dstWl, DestinationNamespace: dstNs, SecurityPolicy: policy}
	}
	dst := func(srcWl, srcNs, dstSvc, dstWl, policy string) telemetry.TCPLabels {
		return telemetry.TCPLabels{Reporter: "destination", SourceWorkload: srcWl, SourceNamespace: srcNs,
			DestinationService: dstSvc, DestinationWorkload: dstWl, DestinationNamespace: "shop", SecurityPolicy: policy}
	}
	tests := []struct {
		name   string
		tunnel bool
		key    flow.Key
		want   telemetry.TCPLabels
	}{
		{"service with one workload on another node, tunnel", true,
			flow.Key{CgroupID: 101, Peer: ap("10.96.0.20:80"), Direction: flow.Outbound}, src(webHost, "web", "shop", "mutual_tls")},
		{"the same without a CA: plaintext between nodes", false,
			flow.Key{CgroupID: 101, Peer: ap("10.96.0.20:80"), Direction: flow.Outbound}, src(webHost, "web", "shop", "none")},
		{"service with two workloads, here and there: neither workload nor policy is known", true,
			flow.Key{CgroupID: 101, Peer: ap("10.96.0.21:80"), Direction: flow.Outbound}, src(mixedHost, "", "shop", "unknown")},
		{"service on this node: never through the tunnel", true,
			flow.Key{CgroupID: 101, Peer: ap("10.96.0.22:80"), Direction: flow.Outbound}, src(localHost, "local", "shop", "none")},
		{"service without endpoints", true,
			flow.Key{CgroupID: 101, Peer: ap("10.96.0.24:80"), Direction: flow.Outbound}, src("empty.shop.svc.cluster.local", "", "shop", "none")},
		{"meshed pod IP on another node", true,
			flow.Key{CgroupID: 101, Peer: ap("10.244.2.11:8080"), Direction: flow.Outbound}, src("", "web", "shop", "mutual_tls")},
		{"excluded port: not captured, so plaintext", true,
			flow.Key{CgroupID: 101, Peer: ap("10.244.2.11:3306"), Direction: flow.Outbound}, src("", "web", "shop", "none")},
		{"unmeshed pod: not captured", true,
			flow.Key{CgroupID: 101, Peer: ap("10.244.1.12:5432"), Direction: flow.Outbound}, src("", "db", "legacy", "none")},
		{"address outside the cluster", true,
			flow.Key{CgroupID: 101, Peer: ap("1.2.3.4:443"), Direction: flow.Outbound}, src("", "", "", "none")},
		{"inbound through this node's proxy, tunnel on", true,
			flow.Key{CgroupID: 102, Peer: ap("10.244.1.1:8080"), Direction: flow.Inbound}, dst("", "", "", "local", "mutual_tls")},
		{"inbound through this node's proxy, no CA", false,
			flow.Key{CgroupID: 102, Peer: ap("10.244.1.1:8080"), Direction: flow.Inbound}, dst("", "", "", "local", "none")},
		{"inbound from another node's proxy in plaintext", false,
			flow.Key{CgroupID: 102, Peer: ap("192.168.77.2:8080"), Direction: flow.Inbound}, dst("", "", "", "local", "none")},
		{"inbound straight from a pod", true,
			flow.Key{CgroupID: 102, Peer: ap("10.244.1.12:8080"), Direction: flow.Inbound}, dst("db", "legacy", "", "local", "none")},
		{"inbound on a port no Service targets", true,
			flow.Key{CgroupID: 102, Peer: ap("10.244.1.12:9000"), Direction: flow.Inbound}, dst("db", "legacy", "", "local", "none")},
		{"unknown cgroup", true,
			flow.Key{CgroupID: 999, Peer: ap("10.96.0.20:80"), Direction: flow.Outbound},
			telemetry.TCPLabels{Reporter: "source", DestinationService: webHost, DestinationWorkload: "web", DestinationNamespace: "shop", SecurityPolicy: "none"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &flowResolver{d: d, node: "node-a", tunnel: tt.tunnel, proxy: []netip.Addr{netip.MustParseAddr("10.244.1.1"), netip.MustParseAddr("192.168.77.1")}}
			require.Equal(t, tt.want, r.labels(tt.key))
		})
	}

	t.Run("inbound service port: one Service, several, and a pod gone from the model", func(t *testing.T) {
		d2 := build(flowSnapshot(), buildInput{node: "node-b", trustDomain: "cluster.local"})
		pods := map[string]*l7proxy.Workload{}
		for _, w := range d2.table.Workloads {
			pods[w.Pod] = w
		}
		// The cgroups are not in the model: the pods left it (gone).
		r := &flowResolver{d: d2, node: "node-b", gone: map[uint64]*l7proxy.Workload{7: pods["web-2"], 8: pods["web-1"]}}
		require.Equal(t, webHost, r.labels(flow.Key{CgroupID: 7, Peer: ap("10.244.2.1:8080"), Direction: flow.Inbound}).DestinationService,
			"web-2:8080 backs only web")
		l := r.labels(flow.Key{CgroupID: 8, Peer: ap("10.244.2.1:8080"), Direction: flow.Inbound})
		require.Empty(t, l.DestinationService, "web-1:8080 backs web and mixed")
		require.Equal(t, "web", l.DestinationWorkload)
	})
}

func stats(opened, closed, failed uint64, rtt ...uint64) flow.Stats {
	bounds := []float64{0.001, 0.01}
	s := flow.Stats{Opened: opened, Closed: closed, Failed: failed, BytesSent: 10 * opened, BytesReceived: 100 * opened}
	if len(rtt) > 0 {
		s.RTT = flow.Histogram{Bounds: bounds, Counts: rtt[:2], Count: rtt[2], Sum: float64(rtt[2]) / 1000}
	}
	return s
}

func TestTCPAccount(t *testing.T) {
	ap := netip.MustParseAddrPort
	web := telemetry.TCPLabels{Reporter: "source", SourceWorkload: "client", DestinationWorkload: "web"}
	other := telemetry.TCPLabels{Reporter: "source", SourceWorkload: "client", DestinationWorkload: "other"}
	k1 := flow.Key{CgroupID: 1, Peer: ap("10.96.0.20:80"), Direction: flow.Outbound}
	k2 := flow.Key{CgroupID: 2, Peer: ap("10.96.0.20:80"), Direction: flow.Outbound}
	labels := map[flow.Key]telemetry.TCPLabels{k1: web, k2: web}
	resolve := func(k flow.Key) telemetry.TCPLabels { return labels[k] }
	now := time.Unix(1000, 0)
	get := func(series []telemetry.TCPSeries, l telemetry.TCPLabels) *telemetry.TCPStats {
		for i := range series {
			if series[i].Labels == l {
				return &series[i].Stats
			}
		}
		return nil
	}

	a := newTCPAccount()
	s := a.update(map[flow.Key]flow.Stats{k1: stats(3, 2, 1, 1, 3, 3), k2: stats(2, 2, 0, 0, 2, 2)}, resolve, now)
	require.Len(t, s, 1, "two keys, one label set")
	got := get(s, web)
	require.Equal(t, uint64(5), got.Opened)
	require.Equal(t, uint64(4), got.Closed)
	require.Equal(t, uint64(50), got.ReceivedBytes, "outbound: what the pod sent is what the destination received")
	require.Equal(t, uint64(500), got.SentBytes)
	require.Equal(t, []uint64{1, 5}, got.RTT.Counts)
	require.Equal(t, uint64(5), got.RTT.Count)

	// Prune deleted k2: its figures stay.
	s = a.update(map[flow.Key]flow.Stats{k1: stats(4, 3, 1, 1, 4, 4)}, resolve, now)
	got = get(s, web)
	require.Equal(t, uint64(6), got.Opened)
	require.Equal(t, []uint64{1, 6}, got.RTT.Counts)
	require.Equal(t, 1, a.carries())

	// k2 comes back from zero: no double count.
	s = a.update(map[flow.Key]flow.Stats{k1: stats(4, 3, 1, 1, 4, 4), k2: stats(1, 0, 0)}, resolve, now)
	require.Equal(t, uint64(7), get(s, web).Opened)

	// k1 now resolves elsewhere: what it counted stays with web, what comes
	// after counts for other.
	labels[k1] = other
	s = a.update(map[flow.Key]flow.Stats{k1: stats(5, 3, 1, 1, 5, 5), k2: stats(1, 0, 0)}, resolve, now)
	require.Equal(t, uint64(7), get(s, web).Opened, "web keeps k2's old 2, k1's 4 and k2's new 1")
	require.Equal(t, uint64(1), get(s, other).Opened, "only what came after the change")
	require.Equal(t, uint64(1), get(s, other).RTT.Count)

	// A proxy connect failure counts as failed.
	a.addFailure(web, now)
	s = a.update(map[flow.Key]flow.Stats{k1: stats(5, 3, 1, 1, 5, 5), k2: stats(1, 0, 0)}, resolve, now)
	require.Equal(t, uint64(1+1), get(s, web).Failed, "k1's kernel failure before the change, and the proxy's")

	// The account survives a restart: a new agent reads the same keys.
	path := filepath.Join(t.TempDir(), "flows.json")
	require.NoError(t, a.save(path))
	b := newTCPAccount()
	require.NoError(t, b.load(path))
	s2 := b.update(map[flow.Key]flow.Stats{k1: stats(5, 3, 1, 1, 5, 5), k2: stats(1, 0, 0)}, resolve, now)
	require.Equal(t, s, s2)

	// A carry with no key left ends after carryTTL.
	s = b.update(map[flow.Key]flow.Stats{}, resolve, now.Add(time.Minute))
	require.NotNil(t, get(s, other), "k1 is gone; other carries its 1")
	s = b.update(map[flow.Key]flow.Stats{}, resolve, now.Add(time.Minute+carryTTL+time.Second))
	require.Empty(t, s)
}

func TestTCPStatsDirection(t *testing.T) {
	s := flow.Stats{BytesSent: 1, BytesReceived: 2}
	require.Equal(t, [2]uint64{2, 1}, [2]uint64{tcpStats(flow.Outbound, s).SentBytes, tcpStats(flow.Outbound, s).ReceivedBytes},
		"a client's received bytes are the destination's sent bytes")
	require.Equal(t, [2]uint64{1, 2}, [2]uint64{tcpStats(flow.Inbound, s).SentBytes, tcpStats(flow.Inbound, s).ReceivedBytes})
}
