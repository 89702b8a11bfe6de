package source

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// scaleYAML is n Services, each with an EndpointSlice of 10 endpoints and
// an HTTPRoute, as the lab's scale benchmark writes them (1.8 MB at 1,000);
// the last route sends /api to backend.
func scaleYAML(n int, backend string) []byte {
	var b strings.Builder
	k := 0
	for i := range n {
		name := fmt.Sprintf("scale-%04d", i)
		ip := fmt.Sprintf("10.96.%d.%d", 100+i/250, i%250+1)
		fmt.Fprintf(&b, `apiVersion: v1
kind: Service
metadata: {name: %s, namespace: bench}
spec:
  type: ClusterIP
  clusterIP: %s
  clusterIPs: [%s]
  ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %s-1
  namespace: bench
  labels: {kubernetes.io/service-name: %s, endpointslice.kubernetes.io/managed-by: skein-bench}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
`, name, ip, ip, name, name)
		for j := range 10 {
			fmt.Fprintf(&b, "- {addresses: [10.245.%d.%d], conditions: {ready: true, serving: true, terminating: false}, nodeName: node-%c}\n", k/250, k%250+1, 'a'+j%2)
			k++
		}
		to := name
		if i == n-1 {
			to = backend
		}
		fmt.Fprintf(&b, `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %s, namespace: bench}
spec:
  parentRefs: [{group: "", kind: Service, name: %s, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: %s, port: 80}]
---
`, name, name, to)
	}
	return []byte(b.String())
}

// BenchmarkFilesReadAfterChange is what the file source spends on a route
// change at 1,000 Services: one HTTPRoute's backend changes, the whole
// file is read again.
func BenchmarkFilesReadAfterChange(b *testing.B) {
	dir := b.TempDir()
	p := filepath.Join(dir, "cluster.yaml")
	versions := [][]byte{scaleYAML(1000, "alt"), scaleYAML(1000, "local")}
	require.NoError(b, os.WriteFile(p, versions[0], 0o644))
	f, err := NewFiles(FilesConfig{Paths: []string{p}}, zap.NewNop())
	require.NoError(b, err)
	u := f.Read()
	require.Empty(b, u.Errors)
	require.Len(b, u.Objects, 3000)
	b.SetBytes(int64(len(versions[0])))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		require.NoError(b, os.WriteFile(p, versions[(i+1)%2], 0o644))
		b.StartTimer()
		if u := f.Read(); len(u.Objects) != 3000 {
			b.Fatalf("%d objects, errors %v", len(u.Objects), u.Errors)
		}
	}
}
