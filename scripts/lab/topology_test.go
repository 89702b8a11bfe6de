package lab

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	discoveryv1 "k8s.io/api/discovery/v1"
)

const baseTopology = `
nodes:
  - name: node-a
  - name: node-b
namespaces:
  - name: shop
    labels: {skein.io/mesh: enabled}
  - name: legacy
pods:
  - name: client
    namespace: shop
    node: node-a
    labels: {app: client}
    serviceAccount: client
  - name: product-v1
    namespace: shop
    node: node-a
    labels: {app: product}
    ports: [{name: http, containerPort: 8080}]
  - name: product-v2
    namespace: shop
    node: node-b
    labels: {app: product, version: v2}
    ports: [{name: http, containerPort: 9090}]
  - name: outsider
    namespace: legacy
    node: node-a
services:
  - name: product
    namespace: shop
    clusterIP: 10.96.0.10
    selector: {app: product}
    ports: [{name: http, port: 80, targetPort: http, appProtocol: http}]
  - name: other
    namespace: shop
    selector: {app: none}
    ports: [{port: 81}]
`

func TestParseValid(t *testing.T) {
	topo, err := Parse([]byte(baseTopology))
	require.NoError(t, err)
	require.Len(t, topo.Nodes, 2)
	require.Len(t, topo.Pods, 4)
	require.Equal(t, "shop/client", topo.Pods[0].Key())
	require.Equal(t, "client", topo.Pods[0].serviceAccount())
	require.Equal(t, "default", topo.Pods[1].serviceAccount())
	require.Equal(t, "http", topo.Services[0].Ports[0].TargetPort.StrVal)
	require.Equal(t, int32(81), topo.Services[1].Ports[0].targetPort().IntVal, "targetPort defaults to port")
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(string) string
		// want are substrings of the error: the object, the field, the problem.
		want []string
	}{
		{
			name: "unknown node",
			edit: func(s string) string {
				return strings.Replace(s, "node: node-b", "node: node-c", 1)
			},
			want: []string{`pods[2] "shop/product-v2"`, "field node", `unknown node "node-c"`, "node-a, node-b"},
		},
		{
			name: "duplicate pod",
			edit: func(s string) string {
				return strings.Replace(s, "name: product-v2", "name: product-v1", 1)
			},
			want: []string{`pods[2] "shop/product-v1"`, "field name", "duplicate pod shop/product-v1"},
		},
		{
			name: "same pod name in another namespace is fine",
			edit: func(s string) string {
				return strings.Replace(s, "name: outsider", "name: client", 1)
			},
		},
		{
			name: "clusterIP not an IP",
			edit: func(s string) string {
				return strings.Replace(s, "clusterIP: 10.96.0.10", "clusterIP: 10.96.0.300", 1)
			},
			want: []string{`services[0] "shop/product"`, "field clusterIP", `"10.96.0.300" is not an IPv4 address`},
		},
		{
			name: "clusterIP outside the service range",
			edit: func(s string) string {
				return strings.Replace(s, "clusterIP: 10.96.0.10", "clusterIP: 10.244.1.5", 1)
			},
			want: []string{`services[0] "shop/product"`, "field clusterIP", "outside the lab's service range 10.96.0.0/16"},
		},
		{
			name: "duplicate clusterIP",
			edit: func(s string) string {
				return strings.Replace(s, "    selector: {app: none}", "    clusterIP: 10.96.0.10\n    selector: {app: none}", 1)
			},
			want: []string{`services[1] "shop/other"`, "field clusterIP", "already the clusterIP of shop/product"},
		},
		{
			name: "unknown namespace",
			edit: func(s string) string {
				return strings.Replace(s, "namespace: legacy", "namespace: nowhere", 1)
			},
			want: []string{`pods[3] "nowhere/outsider"`, "field namespace", `unknown namespace "nowhere"`},
		},
		{
			name: "node name not a DNS label",
			edit: func(s string) string {
				return strings.Replace(s, "  - name: node-b\n", "  - name: Node_B\n", 1)
			},
			want: []string{`nodes[1] "Node_B"`, "field name", "RFC 1123"},
		},
		{
			name: "reserved node name",
			edit: func(s string) string {
				return strings.Replace(s, "  - name: node-b\n", "  - name: underlay\n", 1)
			},
			want: []string{`nodes[1] "underlay"`, "reserved"},
		},
		{
			name: "duplicate node",
			edit: func(s string) string {
				return strings.Replace(s, "  - name: node-b\n", "  - name: node-a\n", 1)
			},
			want: []string{`nodes[1] "node-a"`, "duplicate node name"},
		},
		{
			name: "duplicate namespace",
			edit: func(s string) string {
				return strings.Replace(s, "  - name: legacy\n", "  - name: legacy\n  - name: legacy\n", 1)
			},
			want: []string{`namespaces[2] "legacy"`, "duplicate namespace name"},
		},
		{
			name: "unknown field",
			edit: func(s string) string {
				return strings.Replace(s, "serviceAccount: client", "serviceAcount: client", 1)
			},
			want: []string{"parse topology", `unknown field "serviceAcount"`},
		},
		{
			name: "bad container port",
			edit: func(s string) string {
				return strings.Replace(s, "containerPort: 9090", "containerPort: 70000", 1)
			},
			want: []string{`pods[2] "shop/product-v2"`, "field ports[0].containerPort", "70000"},
		},
		{
			name: "service without ports",
			edit: func(s string) string {
				return strings.Replace(s, "    ports: [{port: 81}]", "    ports: []", 1)
			},
			want: []string{`services[1] "shop/other"`, "field ports", "at least one port"},
		},
		{
			name: "bad label value",
			edit: func(s string) string {
				return strings.Replace(s, "labels: {app: client}", "labels: {app: \"no spaces\"}", 1)
			},
			want: []string{`pods[0] "shop/client"`, "field labels[app]"},
		},
		{
			name: "no nodes",
			edit: func(string) string { return "nodes: []\n" },
			want: []string{"at least one node"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.edit(baseTopology)))
			if len(tt.want) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tt.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestLoadObjects(t *testing.T) {
	dir := t.TempDir()
	route := "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: shop}\n---\n# comment only\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "routes.yaml"), []byte(route), 0o644))
	write := func(name, objects string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(baseTopology+"objects: "+objects+"\n"), 0o644))
		return p
	}

	topo, err := Load(write("ok.yaml", "[routes.yaml]"))
	require.NoError(t, err)
	require.Equal(t, [][]byte{[]byte(route)}, topo.objectDocs)

	_, err = Load(write("missing.yaml", "[nope.yaml]"))
	require.ErrorContains(t, err, "objects[0]")
	require.ErrorContains(t, err, "nope.yaml")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("kind: HTTPRoute\n---\napiVersion: v1\nkind: X\n"), 0o644))
	_, err = Load(write("badref.yaml", "[bad.yaml]"))
	require.ErrorContains(t, err, "objects[0] (bad.yaml): document 1: apiVersion and kind are required")
}

func TestPlanAddresses(t *testing.T) {
	topo, err := Parse([]byte(baseTopology))
	require.NoError(t, err)
	st, err := plan(topo, "skl")
	require.NoError(t, err)

	require.Equal(t, "192.168.77.1", st.Nodes[0].IP.String())
	require.Equal(t, "192.168.77.2", st.Nodes[1].IP.String())
	require.Equal(t, "10.244.2.0/24", st.Nodes[1].PodCIDR.String())
	require.Equal(t, "10.244.2.1", st.Nodes[1].Gateway.String())
	require.Equal(t, "skl-node-a", st.Nodes[0].Netns)

	ips := map[string]string{}
	for _, p := range st.Pods {
		ips[p.Key()] = p.IP.String()
	}
	require.Equal(t, map[string]string{
		"shop/client":     "10.244.1.10",
		"shop/product-v1": "10.244.1.11",
		"shop/product-v2": "10.244.2.10",
		"legacy/outsider": "10.244.1.12",
	}, ips)

	// The explicit clusterIP is kept, the other one is allocated from .10 on, skipping it.
	require.Equal(t, "10.96.0.10", st.Services[0].ClusterIP)
	require.Equal(t, "10.96.0.11", st.Services[1].ClusterIP)
	require.Empty(t, topo.Services[1].ClusterIP, "plan must not change the topology")

	// A pod added later takes the lowest free address of its node.
	p, err := st.addPod(PodSpec{Name: "late", Namespace: "shop", Node: "node-a"})
	require.NoError(t, err)
	require.Equal(t, "10.244.1.13", p.IP.String())
	st.Pods = st.Pods[1:] // client (10.244.1.10) is gone
	p, err = st.addPod(PodSpec{Name: "later", Namespace: "shop", Node: "node-a"})
	require.NoError(t, err)
	require.Equal(t, "10.244.1.10", p.IP.String())

	_, err = st.addPod(PodSpec{Name: "late", Namespace: "shop", Node: "node-a"})
	require.ErrorContains(t, err, "already exists")
	_, err = st.addPod(PodSpec{Name: "x", Namespace: "shop", Node: "node-z"})
	require.ErrorContains(t, err, `unknown node "node-z"`)
}

func TestPlanNames(t *testing.T) {
	topo := &Topology{
		Nodes:      []NodeSpec{{Name: "a"}, {Name: "a-b"}},
		Namespaces: []NamespaceSpec{{Name: "x"}, {Name: "y"}, {Name: "z"}},
		Pods: []PodSpec{
			{Name: "web", Namespace: "x", Node: "a"},
			{Name: "web", Namespace: "y", Node: "a"}, // same name on the same node
			{Name: "web", Namespace: "z", Node: "a-b"},
			{Name: "b-web", Namespace: "x", Node: "a"}, // skl-a-b-web, as a-b's web would be
			{Name: "b", Namespace: "x", Node: "a"},     // skl-a-b is node a-b's netns
		},
	}
	require.NoError(t, topo.Validate())
	st, err := plan(topo, "skl")
	require.NoError(t, err)
	var netns []string
	for _, p := range st.Pods {
		netns = append(netns, p.Netns)
	}
	require.Equal(t, []string{"skl-a-web", "skl-a-y-web", "skl-a-b-web", "skl-a-x-b-web", "skl-a-x-b"}, netns)

	all := map[string]bool{st.Underlay: true}
	for _, n := range st.Nodes {
		require.False(t, all[n.Netns])
		all[n.Netns] = true
		require.Regexp(t, `^sku[0-9a-f]{8}$`, n.UnderlayVeth)
	}
	veths := map[string]bool{}
	for _, p := range st.Pods {
		require.False(t, all[p.Netns], "netns %s used twice", p.Netns)
		all[p.Netns] = true
		require.LessOrEqual(t, len(p.Veth), 15, "IFNAMSIZ")
		require.Regexp(t, `^skv[0-9a-f]{8}$`, p.Veth)
		require.False(t, veths[p.Veth])
		veths[p.Veth] = true
	}

	// Names and UIDs are stable across reruns.
	again, err := plan(topo, "skl")
	require.NoError(t, err)
	for i := range st.Pods {
		require.Equal(t, st.Pods[i].Veth, again.Pods[i].Veth)
		require.Equal(t, st.Pods[i].UID, again.Pods[i].UID)
	}
}

func TestPodUID(t *testing.T) {
	uid := PodUID("skl", "shop", "client")
	require.Regexp(t, regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`), uid)
	require.Equal(t, uid, PodUID("skl", "shop", "client"), "deterministic")
	for _, other := range []string{
		PodUID("skl2", "shop", "client"),
		PodUID("skl", "shop2", "client"),
		PodUID("skl", "shop", "client2"),
		PodUID("skl", "shop/client", ""),
	} {
		require.NotEqual(t, uid, other)
	}
}

func TestCheckPrefix(t *testing.T) {
	for _, ok := range []string{"skl", "sklt123456a", "a"} {
		require.NoError(t, checkPrefix(ok), ok)
	}
	for _, bad := range []string{"", "skl-x", "SKL", "1skl", "skein", "abcdefghijklm", "a/b"} {
		require.Error(t, checkPrefix(bad), bad)
	}
}

func TestOptionsResolve(t *testing.T) {
	o, err := Options{}.resolve()
	require.NoError(t, err)
	require.Equal(t, "skl", o.Prefix)
	require.Equal(t, "/run/skl", o.StateDir)
	require.NotNil(t, o.Logf)

	o, err = Options{Prefix: "sklt1", AgentBinary: "bin/skein-agent"}.resolve()
	require.NoError(t, err)
	require.Equal(t, "/run/sklt1", o.StateDir)
	require.True(t, filepath.IsAbs(o.AgentBinary))

	_, err = Options{StateDir: "/"}.resolve()
	require.Error(t, err)
}

func TestSplitDocuments(t *testing.T) {
	docs := splitDocuments([]byte("a: 1\n---\nb: 2\n--- \nc: 3\n"))
	require.Equal(t, []string{"a: 1\n", "b: 2\n", "c: 3\n"}, []string{string(docs[0]), string(docs[1]), string(docs[2])})
}

func TestDemoTopology(t *testing.T) {
	topo, err := Load(filepath.Join("..", "topologies", "demo.yaml"))
	require.NoError(t, err)
	st, err := plan(topo, DefaultPrefix)
	require.NoError(t, err)
	pods := map[string]*podState{}
	for _, p := range st.Pods {
		pods[p.Key()] = p
	}
	require.Len(t, st.Nodes, 2)
	require.Equal(t, "node-a", pods["shop/client"].Node)
	require.Equal(t, "node-b", pods["shop/product-v2"].Node)
	require.Equal(t, "v2", pods["shop/product-v2"].Labels["version"])
	require.Equal(t, "disabled", pods["shop/optout"].Annotations["skein.io/mesh"])
	require.Equal(t, "legacy", pods["legacy/outsider"].Namespace)
	require.Equal(t, "enabled", st.Namespaces[0].Labels["skein.io/mesh"])
	require.Empty(t, st.Namespaces[1].Labels, "legacy is not enrolled")

	data, err := st.clusterYAML()
	require.NoError(t, err)
	objs, _ := decodeCluster(t, data)
	es := objs["EndpointSlice shop/product-lab"].(*discoveryv1.EndpointSlice)
	require.Len(t, es.Endpoints, 2, "product-v1 and product-v2")
	require.Equal(t, int32(8080), *es.Ports[0].Port)
}
