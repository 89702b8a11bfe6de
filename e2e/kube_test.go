//go:build linux

package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skeinmesh/skein/agent/admin"
	"github.com/skeinmesh/skein/scripts/k8s"
)

const (
	chartDir    = "../deploy/helm/skein"
	alertMarker = "# ---- alerts: copied from deploy/prometheus/thresholds.yaml by scripts/k8s/render-manifests.sh; edit them there. ----"
	renderHint  = "run scripts/k8s/render-manifests.sh and commit the result"
)

// helmTemplate renders the chart exactly as scripts/k8s/render-manifests.sh
// does for deploy/manifests/skein.yaml, without its two header lines.
func helmTemplate(t *testing.T, helm string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, helm, "template", "skein", chartDir,
		"--namespace", "skein-system", "--include-crds", "--set", "namespace.create=true",
		"--api-versions", "monitoring.coreos.com/v1/ServiceMonitor", "--api-versions", "monitoring.coreos.com/v1/PrometheusRule").Output()
	require.NoError(t, err)
	return out
}

func ensureHelm(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds helm on first use")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	helm, err := k8s.EnsureTool(ctx, k8s.ToolHelm)
	if err != nil {
		t.Skipf("helm %s unavailable: %v", k8s.HelmVersion, err)
	}
	return helm
}

// TestKubeManifestsInSync checks that the chart carries the current rules,
// thresholds and dashboards of deploy/prometheus and deploy/grafana, that
// it lints, and that deploy/manifests/skein.yaml is what it renders.
func TestKubeManifestsInSync(t *testing.T) {
	helm := ensureHelm(t)
	same := func(src, copy string) {
		a, err := os.ReadFile(src)
		require.NoError(t, err)
		b, err := os.ReadFile(copy)
		require.NoError(t, err)
		require.True(t, bytes.Equal(a, b), "%s is not a copy of %s: %s", copy, src, renderHint)
	}
	same("../deploy/prometheus/skein-rules.yaml.tmpl", chartDir+"/files/skein-rules.yaml.tmpl")
	src, err := filepath.Glob("../deploy/grafana/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, src)
	dst, err := filepath.Glob(chartDir + "/files/dashboards/*.json")
	require.NoError(t, err)
	require.Len(t, dst, len(src), "dashboards in the chart: %s", renderHint)
	for _, f := range src {
		same(f, chartDir+"/files/dashboards/"+filepath.Base(f))
	}
	values, err := os.ReadFile(chartDir + "/values.yaml")
	require.NoError(t, err)
	_, alerts, ok := strings.Cut(string(values), alertMarker+"\n")
	require.True(t, ok, "values.yaml lacks the alerts marker: %s", renderHint)
	thresholds, err := os.ReadFile("../deploy/prometheus/thresholds.yaml")
	require.NoError(t, err)
	require.Equal(t, string(thresholds), alerts, "the alerts of values.yaml: %s", renderHint)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, helm, "lint", "--strict", chartDir).CombinedOutput()
	require.NoError(t, err, "helm lint:\n%s", out)

	rendered := helmTemplate(t, helm)
	committed, err := os.ReadFile(manifestsPath)
	require.NoError(t, err)
	_, body, _ := strings.Cut(string(committed), "\n")
	_, body, _ = strings.Cut(body, "\n")
	require.Equal(t, string(rendered), body, "deploy/manifests/skein.yaml: %s", renderHint)
}

// manifestObjects decodes deploy/manifests/skein.yaml.
func manifestObjects(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(manifestsPath)
	require.NoError(t, err)
	objs, err := k8s.Decode(data)
	require.NoError(t, err)
	return objs
}

func findObject(t *testing.T, objs []*unstructured.Unstructured, kind, name string, into any) {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, into, true))
			return
		}
	}
	t.Fatalf("no %s %s in %s", kind, name, manifestsPath)
}

// TestKubeManifestsLeastPrivilege checks the rendered manifests for what
// the design promises, without a cluster.
func TestKubeManifestsLeastPrivilege(t *testing.T) {
	objs := manifestObjects(t)

	var ds appsv1.DaemonSet
	findObject(t, objs, "DaemonSet", "skein-agent", &ds)
	spec := ds.Spec.Template.Spec
	require.True(t, spec.HostNetwork)
	require.False(t, spec.HostPID)
	require.Equal(t, "system-node-critical", spec.PriorityClassName)
	require.Equal(t, []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, spec.Tolerations, "every taint is tolerated")
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	require.Equal(t, appsv1.RollingUpdateDaemonSetStrategyType, ds.Spec.UpdateStrategy.Type)
	// The new agent starts beside the old one and takes its listeners and
	// pinned programs (hitless upgrade); no node is ever without an agent.
	require.Equal(t, 0, ru.MaxUnavailable.IntValue())
	require.Equal(t, 1, ru.MaxSurge.IntValue())

	require.Len(t, spec.Containers, 1)
	agent := spec.Containers[0]
	sc := agent.SecurityContext
	require.NotNil(t, sc)
	require.False(t, *sc.Privileged, "the agent is not privileged")
	require.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
	require.ElementsMatch(t, []corev1.Capability{"BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN", "SYS_RESOURCE"}, sc.Capabilities.Add)
	require.Contains(t, agent.Args, "--in-cluster")
	require.Equal(t, "/healthz", agent.LivenessProbe.HTTPGet.Path)
	require.Equal(t, "/readyz", agent.ReadinessProbe.HTTPGet.Path)
	require.Equal(t, 15020, agent.ReadinessProbe.HTTPGet.Port.IntValue())
	env := map[string]string{}
	for _, e := range agent.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	require.Equal(t, map[string]string{"NODE_NAME": "spec.nodeName", "NODE_IP": "status.hostIP"}, env)
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range agent.VolumeMounts {
		mounts[m.MountPath] = m
	}
	for _, p := range []string{"/sys/fs/bpf", "/host/cgroup2", "/run/skein", "/sys/kernel/tracing", "/var/lib/skein/logs"} {
		require.Contains(t, mounts, p)
	}
	require.Contains(t, agent.Args, "--accesslog-dir=/var/lib/skein/logs", "the access log store is on the node's disk, not in the container")
	// Bidirectional propagation is for privileged containers only: the
	// init container that mounts bpffs and tracefs is the one that is.
	require.Len(t, spec.InitContainers, 1)
	mount := spec.InitContainers[0]
	require.True(t, *mount.SecurityContext.Privileged)
	for _, m := range mount.VolumeMounts {
		require.Equal(t, corev1.MountPropagationBidirectional, *m.MountPropagation, m.MountPath)
	}

	var role rbacv1.ClusterRole
	findObject(t, objs, "ClusterRole", "skein-agent", &role)
	var resources []string
	for _, r := range role.Rules {
		require.ElementsMatch(t, []string{"get", "list", "watch"}, r.Verbs, "the agent only reads")
		require.Empty(t, r.ResourceNames)
		resources = append(resources, r.Resources...)
	}
	require.ElementsMatch(t, []string{"pods", "services", "namespaces", "nodes", "endpointslices", "httproutes", "grpcroutes", "authorizationpolicies"}, resources)

	for _, o := range objs {
		if o.GetKind() != "ClusterRole" && o.GetKind() != "Role" {
			continue
		}
		var r rbacv1.ClusterRole
		require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &r))
		for _, rule := range r.Rules {
			require.NotContains(t, rule.Resources, "secrets", "%s %s", o.GetKind(), o.GetName())
			require.NotContains(t, rule.Resources, "*")
			require.NotContains(t, rule.Verbs, "*")
			if slices.Contains(rule.Resources, "tokenreviews") {
				require.Equal(t, "skein-ca", o.GetName(), "only the CA reviews tokens")
			}
		}
	}
}

// monitoringCRDs are stand-ins for the Prometheus operator's CRDs, so the
// ServiceMonitor and PrometheusRule of the manifests can be dry-run
// applied: their schemas keep every field, the operator's check them.
const monitoringCRDs = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: prometheusrules.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  names: {kind: PrometheusRule, listKind: PrometheusRuleList, plural: prometheusrules, singular: prometheusrule}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
`

const kubeShop = `
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {skein.io/mesh: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {tier: web}
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-a, namespace: shop}
spec:
  selector: {app: web-a}
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-b, namespace: shop}
spec:
  selector: {app: web-b}
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
`

// webRoute splits the web Service by path between two backends.
func webRoute(a, b string) string {
	return `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /a}}]
    backendRefs: [{name: ` + a + `, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /b}}]
    backendRefs: [{name: ` + b + `, port: 80}]
`
}

func TestPrivilegedKube(t *testing.T) {
	start := time.Now()
	ke := newKubeEnv(t, []string{"node-a", "node-b"}, []string{"shop"}, false)
	t.Logf("API server, RBAC and lab up in %s", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	t.Run("an agent is ready only after its initial list", func(t *testing.T) {
		ke := ke.in(t)
		ke.unforward("node-b")
		ke.startAgent("node-a")
		ke.startAgent("node-b")
		ke.waitReady("node-a")
		for range 10 {
			require.False(t, ke.readyz("node-b"), "node-b's agent cannot reach the API server yet")
			time.Sleep(200 * time.Millisecond)
		}
		ke.forward("node-b")
		ke.waitReady("node-b")
		require.Contains(t, ke.lab.AgentLog("node-b"), "API server discovery failed; retrying")
	})

	t.Run("the agent's ServiceAccount reads what it needs and nothing else", func(t *testing.T) {
		for _, res := range []string{"pods", "services", "endpointslices.discovery.k8s.io", "namespaces", "nodes",
			"httproutes.gateway.networking.k8s.io", "grpcroutes.gateway.networking.k8s.io", "authorizationpolicies.security.istio.io"} {
			for _, verb := range []string{"get", "list", "watch"} {
				require.True(t, canI(t, ke.kubeconfig, verb, res, "--all-namespaces"), "%s %s", verb, res)
			}
		}
		for _, q := range [][]string{
			{"get", "secrets", "--all-namespaces"},
			{"list", "secrets", "-n", "skein-system"},
			{"watch", "secrets", "-n", "shop"},
			{"get", "configmaps", "-n", "skein-system"},
			{"create", "pods", "-n", "shop"},
			{"update", "services", "-n", "shop"},
			{"patch", "httproutes.gateway.networking.k8s.io", "-n", "shop"},
			{"delete", "namespaces"},
			{"create", "endpointslices.discovery.k8s.io", "-n", "shop"},
			{"create", "tokenreviews.authentication.k8s.io"},
			{"create", "serviceaccounts/token", "-n", "skein-system"},
			{"create", "pods/exec", "-n", "shop"},
		} {
			require.False(t, canI(t, ke.kubeconfig, q...), "the agent must not %v", q)
		}
		admin := ke.cluster.Kubeconfig()
		asCA := "--as=system:serviceaccount:skein-system:skein-ca"
		require.True(t, canI(t, admin, "create", "tokenreviews.authentication.k8s.io", asCA))
		require.True(t, canI(t, admin, "list", "pods", "--all-namespaces", asCA))
		require.False(t, canI(t, admin, "get", "secrets", "-n", "skein-system", asCA))
		require.True(t, canI(t, admin, "update", "configmaps/skein-ca-roots", "-n", "skein-system", asCA))
		require.False(t, canI(t, admin, "update", "configmaps/other", "-n", "skein-system", asCA))
	})

	t.Run("every rendered manifest passes a server-side dry run", func(t *testing.T) {
		objs := manifestObjects(t)
		crds, err := k8s.Decode([]byte(monitoringCRDs))
		require.NoError(t, err)
		rc := ke.cluster.RESTConfig()
		_, err = k8s.ApplyObjects(ctx, rc, crds, k8s.ApplyOptions{FieldManager: "skein-e2e"})
		require.NoError(t, err)
		applied, err := k8s.ApplyObjects(ctx, rc, objs, k8s.ApplyOptions{FieldManager: "skein-e2e", DryRun: true})
		require.NoError(t, err)
		require.Len(t, applied, len(objs))
		t.Logf("dry-run applied %d objects: %s", len(applied), strings.Join(applied, ", "))
		_, err = ke.cs.AppsV1().DaemonSets("skein-system").Get(ctx, "skein-agent", metav1.GetOptions{})
		require.Error(t, err, "a dry run persists nothing")

		// And the chart itself, through Helm, against this API server.
		helm := ensureHelm(t)
		// --take-ownership: the RBAC objects were applied without Helm above.
		out, err := exec.CommandContext(ctx, helm, "install", "skein", chartDir, "--dry-run=server", "--take-ownership",
			"--kubeconfig", ke.cluster.Kubeconfig(), "--namespace", "skein-system").CombinedOutput()
		require.NoError(t, err, "helm install --dry-run=server:\n%s", out)
		require.Contains(t, string(out), "kind: ServiceMonitor", "the operator's CRDs are served now")
		require.Contains(t, string(out), "Gateway API CRDs", "NOTES.txt")
	})

	// The shop: a client, two backends on two nodes, Services for each
	// backend and one (web) that both serve, with a route on web.
	ke.apply(kubeShop)
	client := ke.addPod(podSpec{Namespace: "shop", Name: "client", Node: "node-a", ServiceAccount: "client", Labels: map[string]string{"app": "client"}})
	webA := ke.addPod(podSpec{Namespace: "shop", Name: "web-a", Node: "node-a", ServiceAccount: "web", Port: 8080, Labels: map[string]string{"app": "web-a", "tier": "web"}})
	ke.addPod(podSpec{Namespace: "shop", Name: "web-b", Node: "node-b", ServiceAccount: "web", Port: 8080, Labels: map[string]string{"app": "web-b", "tier": "web"}})
	ke.apply(webRoute("web-a", "web-b"))
	vip := func(name string) string {
		svc, err := ke.cs.CoreV1().Services("shop").Get(ctx, name, metav1.GetOptions{})
		require.NoError(t, err)
		require.NotEmpty(t, svc.Spec.ClusterIP)
		return svc.Spec.ClusterIP
	}
	web, webAIP := vip("web"), vip("web-a")

	// routed returns whether n requests to path all reach pod.
	routed := func(path, pod string, n int) bool {
		for range n {
			got, err := ke.echoFrom(client.key(), "http://"+web+path)
			if err != nil || got != pod {
				return false
			}
		}
		return true
	}
	workloads := func(node string) map[string]admin.Workload {
		var ws []admin.Workload
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		require.NoError(t, admin.NewClient(ke.lab.AdminSocket(node)).Get(wctx, admin.APIVersion+"/workloads", &ws))
		out := map[string]admin.Workload{}
		for _, w := range ws {
			out[w.Namespace+"/"+w.Pod] = w
		}
		return out
	}
	endpoints := func(node, service string) []string {
		var ses []admin.ServiceEndpoints
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		require.NoError(t, admin.NewClient(ke.lab.AdminSocket(node)).Get(wctx, admin.APIVersion+"/endpoints", &ses))
		var out []string
		for _, se := range ses {
			if strings.HasPrefix(se.Service, service+":") || se.Service == service {
				for _, ep := range se.Endpoints {
					out = append(out, ep.Address)
				}
			}
		}
		slices.Sort(out)
		return slices.Compact(out)
	}

	t.Run("pods created through the API are meshed by their API UID", func(t *testing.T) {
		require.Eventually(t, func() bool {
			ws := workloads("node-a")
			return ws["shop/client"].Captured && ws["shop/web-a"].Captured
		}, 15*time.Second, 200*time.Millisecond, "workloads on node-a: %+v", workloads("node-a"))
		w := workloads("node-a")["shop/client"]
		require.Equal(t, client.UID, w.UID)
		require.Equal(t, client.Cgroup, w.Cgroup, "the cgroup named by the API's UID")
		require.Equal(t, "spiffe://cluster.local/ns/shop/sa/client", w.Identity)
		require.NotContains(t, workloads("node-a"), "shop/web-b", "a node lists its own pods")
		out, err := ke.agentctl("node-a", "workloads")
		require.NoError(t, err, out)
		require.Contains(t, out, "web-a")
	})

	t.Run("an HTTPRoute from the API splits the Service by path", func(t *testing.T) {
		require.Eventually(t, func() bool { return routed("/a", "web-a", 5) && routed("/b", "web-b", 5) },
			20*time.Second, 200*time.Millisecond)
		require.True(t, routed("/a/x", "web-a", 10))
		require.True(t, routed("/b/y", "web-b", 10))
	})

	t.Run("editing the route shifts traffic within seconds", func(t *testing.T) {
		ke := ke.in(t)
		edited := time.Now()
		ke.apply(webRoute("web-b", "web-a"))
		require.Eventually(t, func() bool { return routed("/a", "web-b", 3) && routed("/b", "web-a", 3) },
			10*time.Second, 50*time.Millisecond)
		t.Logf("route edit applied to traffic after %s", time.Since(edited).Round(time.Millisecond))
	})

	t.Run("pods come and go through the API: endpoints and membership follow", func(t *testing.T) {
		ke := ke.in(t)
		a2 := ke.addPod(podSpec{Namespace: "shop", Name: "web-a2", Node: "node-a", ServiceAccount: "web", Port: 8080, Labels: map[string]string{"app": "web-a", "tier": "web"}})
		require.Eventually(t, func() bool {
			w := workloads("node-a")["shop/web-a2"]
			return w.Captured && w.UID == a2.UID && slices.Equal(endpoints("node-a", "shop/web-a"), sortedIPs(webA.IP+":8080", a2.IP+":8080"))
		}, 15*time.Second, 200*time.Millisecond, "web-a2 joins the endpoints of web-a and node-a's members")
		require.Eventually(t, func() bool {
			seen := map[string]bool{}
			for range 12 {
				if got, err := ke.echoFrom(client.key(), "http://"+webAIP+"/"); err == nil {
					seen[got] = true
				}
			}
			return seen["web-a"] && seen["web-a2"]
		}, 15*time.Second, 200*time.Millisecond, "both backends of web-a serve")

		deleted := time.Now()
		ke.deletePod("shop/web-a2")
		require.Eventually(t, func() bool {
			_, member := workloads("node-a")["shop/web-a2"]
			return !member && slices.Equal(endpoints("node-a", "shop/web-a"), []string{webA.IP + ":8080"})
		}, 15*time.Second, 100*time.Millisecond, "web-a2 leaves the endpoints and the members")
		t.Logf("deleted pod gone from endpoints and membership after %s", time.Since(deleted).Round(time.Millisecond))
		out, err := ke.agentctl("node-a", "workloads")
		require.NoError(t, err, out)
		require.NotContains(t, out, "web-a2")
		for range 10 {
			got, err := ke.echoFrom(client.key(), "http://"+webAIP+"/")
			require.NoError(t, err)
			require.Equal(t, "web-a", got)
		}
	})

	t.Run("an API server restart is survived and later changes apply", func(t *testing.T) {
		ke := ke.in(t)
		before, _ := ke.connections("node-a")
		stopped := time.Now()
		require.NoError(t, ke.cluster.StopAPIServer(2*time.Second))
		t.Logf("API server stopped in %s", time.Since(stopped).Round(time.Millisecond))
		// The last good configuration keeps serving while the API is down.
		require.True(t, routed("/a", "web-b", 5))
		time.Sleep(3 * time.Second) // let every watch fail and back off
		require.True(t, ke.readyz("node-a"), "a lost watch does not make the agent unready")
		restarted := time.Now()
		require.NoError(t, ke.cluster.StartAPIServer(ctx))
		t.Logf("API server back after %s", time.Since(restarted).Round(time.Millisecond))
		ke.apply(webRoute("web-a", "web-b"))
		changed := time.Now()
		require.Eventually(t, func() bool { return routed("/a", "web-a", 3) && routed("/b", "web-b", 3) },
			45*time.Second, 100*time.Millisecond)
		t.Logf("route change after the restart applied after %s", time.Since(changed).Round(time.Millisecond))
		// The watches really broke (client-go logs through the agent's
		// logger), and were re-established against the new process.
		// The agent's connections to the old process were cut, and it dialled
		// the new one.
		after, open := ke.connections("node-a")
		require.Greater(t, after, before, "node-a's agent reconnected")
		require.LessOrEqual(t, open, after-before, "every connection open now was made after the restart")
	})
	t.Logf("TestPrivilegedKube took %s", time.Since(start).Round(time.Millisecond))
}

func sortedIPs(ips ...string) []string {
	slices.Sort(ips)
	return ips
}
