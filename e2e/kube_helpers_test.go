//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/skeinmesh/skein/internal/testenv"
	"github.com/skeinmesh/skein/scripts/k8s"
	"github.com/skeinmesh/skein/scripts/lab"
)

// The API server plays the control plane; this file plays what a real
// cluster runs besides it: the kubelet (it creates each pod's network
// namespace and cgroup through the lab, starts the pod's process, writes
// the pod's status and deletes it for good), the CNI (the lab's veth and
// addresses) and the EndpointSlice controller (slices from the Services'
// selectors and the pods' readiness).
//
// Pod UIDs: the API server assigns them, the lab derives its own
// (lab.PodUID) and names the pod cgroup after it. The agent finds a pod's
// cgroup by the API's UID, so the kubelet here creates the cgroup
// kubepods/besteffort/pod<API UID> beside the lab's and runs the pod's
// processes there, in the lab's network namespace. (A lab.PodSpec.UID field,
// used instead of lab.PodUID when set, would let the lab do this itself.)

// kubeEnv is a test's API server, lab and agents.
type kubeEnv struct {
	*env
	cluster    *k8s.Cluster
	cs         *kubernetes.Clientset
	kubeconfig string // the agents' kubeconfig (ServiceAccount skein-agent)
	saToken    string
	*kubeState
}

// kubeState is what every view of a kubeEnv shares.
type kubeState struct {
	mu         sync.Mutex
	forwarders map[string]*k8s.Forwarder // by node
	agents     map[string]*exec.Cmd      // by node
	pods       map[string]*kubePod       // by namespace/name
}

// in returns the environment for a subtest: helpers fail t, not the parent.
func (ke *kubeEnv) in(t *testing.T) *kubeEnv {
	c := *ke
	c.env = &env{t: t, lab: ke.lab}
	return &c
}

// kubePod is a pod the test created through the API and plays kubelet for.
type kubePod struct {
	Namespace, Name, Node string
	UID                   string
	IP                    string
	Cgroup                string // pod<API UID> under the node's kubepods
	Netns                 string // path of the lab's network namespace
	proc                  *exec.Cmd
}

func (p *kubePod) key() string { return p.Namespace + "/" + p.Name }

// manifests is the rendered chart, as committed.
const manifestsPath = "../deploy/manifests/skein.yaml"

// newKubeEnv starts a real API server (building it on first use), applies
// the RBAC of deploy/manifests for real, brings up a lab with the nodes and
// namespaces (pods come later, through the API), registers the nodes with
// the API server and starts one agent per node with --kubeconfig and the
// skein-agent ServiceAccount's token. Everything is torn down when the test
// ends, whatever happens.
func newKubeEnv(t *testing.T, nodes, namespaces []string, startAgents bool) *kubeEnv {
	t.Helper()
	testenv.RequirePrivileged(t)
	if binDir == "" {
		t.Skip("binaries were not built (TestMain)")
	}
	cluster := startCluster(t)
	cs, err := cluster.Client()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	applied := applyRBAC(t, cluster)
	t.Logf("applied from %s: %s", manifestsPath, strings.Join(applied, ", "))
	token, err := cluster.ServiceAccountToken(ctx, "skein-system", "skein-agent", time.Hour)
	require.NoError(t, err)
	kubeconfig := filepath.Join(t.TempDir(), "agent.kubeconfig")
	require.NoError(t, cluster.WriteKubeconfig(kubeconfig, "skein-agent", token))

	var topo strings.Builder
	topo.WriteString("nodes:\n")
	for _, n := range nodes {
		fmt.Fprintf(&topo, "  - {name: %s}\n", n)
	}
	topo.WriteString("namespaces:\n")
	for _, ns := range namespaces {
		fmt.Fprintf(&topo, "  - {name: %s}\n", ns)
	}
	e := newEnv(t, topo.String(), nil, true)
	ke := &kubeEnv{
		env: e, cluster: cluster, cs: cs, kubeconfig: kubeconfig, saToken: token,
		kubeState: &kubeState{forwarders: map[string]*k8s.Forwarder{}, agents: map[string]*exec.Cmd{}, pods: map[string]*kubePod{}},
	}
	t.Cleanup(func() {
		ke.mu.Lock()
		defer ke.mu.Unlock()
		for _, f := range ke.forwarders {
			f.Close()
		}
		if t.Failed() {
			t.Logf("kube-apiserver log:\n%s", cluster.Log("kube-apiserver", 40))
		}
	})
	for _, n := range e.lab.Nodes() {
		ke.registerNode(ctx, n)
		ke.forward(n.Name)
		if startAgents {
			ke.startAgent(n.Name)
		}
	}
	if startAgents {
		for _, n := range nodes {
			e.waitReady(n)
		}
	}
	return ke
}

// startCluster starts an API server for the test, or skips the test when
// kube-apiserver cannot be had (SKEIN_K8S_NO_BUILD and nothing cached, or
// the build failed, e.g. without the Go module proxy).
func startCluster(t *testing.T) *k8s.Cluster {
	t.Helper()
	// A first build takes minutes on two cores; later runs find it cached.
	bctx, bcancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer bcancel()
	start := time.Now()
	bin, err := k8s.EnsureTool(bctx, k8s.ToolKubeAPIServer)
	if err != nil {
		t.Skipf("kube-apiserver %s unavailable: %v", k8s.KubeVersion, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Logf("built kube-apiserver in %s", d.Round(time.Second))
	}
	if _, err := exec.LookPath("etcd"); err != nil {
		t.Skip("etcd not installed (scripts/deps.sh installs etcd-server)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := k8s.Up(ctx, k8s.Options{KubeAPIServer: bin, Logf: t.Logf})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Down()) })
	return c
}

// applyRBAC server-side applies what the agents and the CA need to exist
// before they start: the Namespace, ServiceAccounts and RBAC objects of the
// rendered manifests.
func applyRBAC(t *testing.T, c *k8s.Cluster) []string {
	t.Helper()
	data, err := os.ReadFile(manifestsPath)
	require.NoError(t, err)
	objs, err := k8s.Decode(data)
	require.NoError(t, err)
	var rbac []*unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			rbac = append(rbac, o)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	applied, err := k8s.ApplyObjects(ctx, c.RESTConfig(), rbac, k8s.ApplyOptions{FieldManager: "skein-e2e"})
	require.NoError(t, err)
	return applied
}

// registerNode creates the lab node's Node object, with its address and a
// Ready condition, as a kubelet registers itself.
func (ke *kubeEnv) registerNode(ctx context.Context, n lab.NodeInfo) {
	t := ke.t
	t.Helper()
	node, err := ke.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{"kubernetes.io/hostname": n.Name, "kubernetes.io/os": "linux"}},
		Spec:       corev1.NodeSpec{PodCIDR: n.PodCIDR, PodCIDRs: []string{n.PodCIDR}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	node.Status = corev1.NodeStatus{
		Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.IP}, {Type: corev1.NodeHostName, Address: n.Name}},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
	}
	_, err = ke.cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	require.NoError(t, err)
}

// forward makes the API server reachable at the same address inside the
// node's network namespace (which has no route out of the lab).
func (ke *kubeEnv) forward(node string) {
	t := ke.t
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", ke.cluster.Port())
	f, err := k8s.ForwardIntoNetns(ke.lab.NodeNetns(node), addr, addr)
	require.NoError(t, err)
	ke.mu.Lock()
	ke.forwarders[node] = f
	ke.mu.Unlock()
}

// unforward cuts a node off from the API server.
func (ke *kubeEnv) unforward(node string) {
	ke.mu.Lock()
	f := ke.forwarders[node]
	delete(ke.forwarders, node)
	ke.mu.Unlock()
	if f != nil {
		require.NoError(ke.t, f.Close())
	}
}

// connections returns how many connections a node's agent made to the API
// server so far, and how many are open.
func (ke *kubeEnv) connections(node string) (total, open int64) {
	ke.mu.Lock()
	f := ke.forwarders[node]
	ke.mu.Unlock()
	require.NotNil(ke.t, f, "node %s is not connected to the API server", node)
	return f.Accepted()
}

// inCgroupNetns prepares argv to run in a cgroup (entered at clone, before
// the child runs) and then a network namespace (nsenter), as the lab does.
func inCgroupNetns(ctx context.Context, cgroupDir, netnsPath string, argv []string) (*exec.Cmd, func(), error) {
	fd, err := unix.Open(cgroupDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open cgroup %s: %w", cgroupDir, err)
	}
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + netnsPath, "--"}, argv...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	cmd.WaitDelay = 5 * time.Second
	return cmd, func() { unix.Close(fd) }, nil
}

// agentArgs are the lab's agent flags with the API server instead of the
// lab's cluster.yaml.
func (ke *kubeEnv) agentArgs(node string, extra ...string) []string {
	var args []string
	labArgs := ke.lab.AgentArgs(node)
	for i := 0; i < len(labArgs); i++ {
		if labArgs[i] == "--config" {
			i++ // and its value
			continue
		}
		args = append(args, labArgs[i])
	}
	args = append(args, "--kubeconfig", ke.kubeconfig, "--log-level", "debug")
	return append(args, extra...)
}

// startAgent starts the agent of a node in the node's agent cgroup and
// network namespace, appending its output to the lab's agent log.
func (ke *kubeEnv) startAgent(node string, extra ...string) {
	t := ke.t
	t.Helper()
	var agentCgroup string
	for _, n := range ke.lab.Nodes() {
		if n.Name == node {
			agentCgroup = filepath.Join(n.Cgroup, "agent")
		}
	}
	require.NotEmpty(t, agentCgroup, "node %s", node)
	argv := append([]string{filepath.Join(binDir, "skein-agent")}, ke.agentArgs(node, extra...)...)
	cmd, closeFD, err := inCgroupNetns(context.Background(), agentCgroup, ke.lab.NodeNetns(node), argv)
	require.NoError(t, err)
	defer closeFD()
	logf, err := os.OpenFile(ke.lab.AgentLogPath(node), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(t, err)
	defer logf.Close()
	fmt.Fprintf(logf, "[kube e2e] %s start: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr.Setsid = true
	require.NoError(t, cmd.Start())
	go func() { _ = cmd.Wait() }()
	ke.mu.Lock()
	ke.agents[node] = cmd
	ke.mu.Unlock()
}

// stopAgent stops a node's agent with SIGTERM and waits (bounded).
func (ke *kubeEnv) stopAgent(node string) {
	ke.mu.Lock()
	cmd := ke.agents[node]
	delete(ke.agents, node)
	ke.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && syscall.Kill(cmd.Process.Pid, 0) == nil {
		time.Sleep(50 * time.Millisecond)
	}
}

// readyz returns whether a node's agent answers /readyz with ready.
func (ke *kubeEnv) readyz(node string) bool {
	out, err := ke.lab.ExecNode(context.Background(), node, "curl", "-sf", "--max-time", "1", "http://127.0.0.1:15020/readyz")
	return err == nil && strings.Contains(string(out), "ready")
}

// podSpec is what a test says about a pod; the rest is the kubelet's job.
type podSpec struct {
	Namespace, Name, Node, ServiceAccount string
	Labels                                map[string]string
	// Port, if set, runs skein-lab echo on it as the pod's process;
	// otherwise the pod sleeps.
	Port int32
}

// addPod creates a pod through the API and plays kubelet and CNI for it:
// network namespace and veth (the lab), the cgroup named by the API's UID,
// the pod's process in both, and Running/Ready status with the pod's IP.
// Then it updates the EndpointSlices of the pod's namespace.
func (ke *kubeEnv) addPod(spec podSpec) *kubePod {
	t := ke.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if spec.ServiceAccount == "" {
		spec.ServiceAccount = "default"
	}
	ke.ensureServiceAccount(ctx, spec.Namespace, spec.ServiceAccount)
	container := corev1.Container{Name: "app", Image: "skein.local/lab:1"}
	if spec.Port != 0 {
		container.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: spec.Port, Protocol: corev1.ProtocolTCP}}
	}
	pod, err := ke.cs.CoreV1().Pods(spec.Namespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: spec.Namespace, Name: spec.Name, Labels: spec.Labels},
		Spec: corev1.PodSpec{
			NodeName: spec.Node, ServiceAccountName: spec.ServiceAccount,
			Containers: []corev1.Container{container},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	// CNI: the lab's network namespace, veth and address for the pod.
	require.NoError(t, ke.lab.AddPod(ctx, lab.PodSpec{Name: spec.Name, Namespace: spec.Namespace, Node: spec.Node, Labels: spec.Labels}))
	info := ke.lab.Pod(spec.Namespace + "/" + spec.Name)
	require.NotEmpty(t, info.IP)
	p := &kubePod{
		Namespace: spec.Namespace, Name: spec.Name, Node: spec.Node, UID: string(pod.UID), IP: info.IP,
		Cgroup: filepath.Join(filepath.Dir(info.Cgroup), "pod"+string(pod.UID)),
		Netns:  info.NetnsPath,
	}
	// kubelet: the pod cgroup, named by the API's UID, and the process.
	require.NoError(t, os.Mkdir(p.Cgroup, 0o755))
	argv := []string{"sleep", "infinity"}
	if spec.Port != 0 {
		argv = []string{"skein-lab", "echo", "--listen", fmt.Sprintf(":%d", spec.Port)}
	}
	argv[0], err = exec.LookPath(argv[0])
	require.NoError(t, err)
	cmd, closeFD, err := inCgroupNetns(context.Background(), p.Cgroup, p.Netns, argv)
	require.NoError(t, err)
	cmd.Env = append(os.Environ(), lab.EnvPod+"="+p.Name, lab.EnvNamespace+"="+p.Namespace, lab.EnvNode+"="+p.Node)
	logf, err := os.OpenFile(filepath.Join(ke.lab.StateDir(), "pods", p.Namespace+"_"+p.Name+".kube.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	err = cmd.Start()
	closeFD()
	logf.Close()
	require.NoError(t, err)
	go func() { _ = cmd.Wait() }()
	p.proc = cmd
	if spec.Port != 0 {
		require.NoError(t, ke.lab.WaitTCP(ctx, p.key(), int(spec.Port)))
	}

	// kubelet: status.
	nodeIP := ""
	for _, n := range ke.lab.Nodes() {
		if n.Name == spec.Node {
			nodeIP = n.IP
		}
	}
	now := metav1.Now()
	pod.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: p.IP, PodIPs: []corev1.PodIP{{IP: p.IP}},
		HostIP: nodeIP, HostIPs: []corev1.HostIP{{IP: nodeIP}}, StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true, Image: container.Image, ImageID: container.Image,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}},
	}
	_, err = ke.cs.CoreV1().Pods(spec.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	require.NoError(t, err)
	ke.mu.Lock()
	ke.pods[p.key()] = p
	ke.mu.Unlock()
	ke.syncEndpoints(ctx, spec.Namespace)
	return p
}

func (ke *kubeEnv) ensureServiceAccount(ctx context.Context, ns, name string) {
	_, err := ke.cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		require.NoError(ke.t, err)
	}
}

// deletePod deletes a pod as the API and the kubelet do: a graceful
// delete (the pod is Terminating), the kubelet stops its processes and
// removes its cgroup and network, then confirms with a zero grace period
// and the object goes. Then the pod leaves the EndpointSlices.
func (ke *kubeEnv) deletePod(key string) {
	t := ke.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ke.mu.Lock()
	p := ke.pods[key]
	delete(ke.pods, key)
	ke.mu.Unlock()
	require.NotNil(t, p, "pod %s", key)
	require.NoError(t, ke.cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}))
	got, err := ke.cs.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
	require.NoError(t, err, "a pod bound to a node waits for its kubelet")
	require.NotNil(t, got.DeletionTimestamp)

	// Kill the pod's processes and remove its cgroup once the kernel says
	// it is empty (dying tasks keep it populated for a moment).
	require.NoError(t, os.WriteFile(filepath.Join(p.Cgroup, "cgroup.kill"), []byte("1"), 0o644))
	require.Eventually(t, func() bool {
		err := os.Remove(p.Cgroup)
		return err == nil || errors.Is(err, os.ErrNotExist)
	}, 10*time.Second, 20*time.Millisecond, "remove cgroup %s", p.Cgroup)
	require.NoError(t, ke.lab.DeletePod(ctx, key))
	require.NoError(t, ke.cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptrTo(int64(0))}))
	require.Eventually(t, func() bool {
		_, err := ke.cs.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, 10*time.Second, 50*time.Millisecond)
	ke.syncEndpoints(ctx, p.Namespace)
}

func ptrTo[T any](v T) *T { return &v }

// syncEndpoints plays the EndpointSlice controller for one namespace: one
// slice per Service with a selector, holding the selected pods that have an
// IP and are not being deleted, ready as their Ready condition says.
func (ke *kubeEnv) syncEndpoints(ctx context.Context, ns string) {
	t := ke.t
	t.Helper()
	svcs, err := ke.cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	pods, err := ke.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	for _, svc := range svcs.Items {
		if len(svc.Spec.Selector) == 0 {
			continue
		}
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		want := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: ns, Name: svc.Name + "-lab",
				Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: "skein-e2e"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID,
					Controller: ptrTo(true), BlockOwnerDeletion: ptrTo(true)}},
			},
			AddressType: discoveryv1.AddressTypeIPv4,
		}
		for _, sp := range svc.Spec.Ports {
			port := sp.TargetPort
			if port.Type == intstr.Int && port.IntVal == 0 {
				port = intstr.FromInt32(sp.Port)
			}
			if port.Type != intstr.Int {
				t.Fatalf("service %s/%s: named targetPorts are not played here", ns, svc.Name)
			}
			want.Ports = append(want.Ports, discoveryv1.EndpointPort{Name: ptrTo(sp.Name), Port: ptrTo(port.IntVal), Protocol: ptrTo(corev1.ProtocolTCP), AppProtocol: sp.AppProtocol})
		}
		for _, p := range pods.Items {
			if !sel.Matches(labels.Set(p.Labels)) || p.Status.PodIP == "" || p.DeletionTimestamp != nil {
				continue
			}
			ready := false
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady {
					ready = c.Status == corev1.ConditionTrue
				}
			}
			want.Endpoints = append(want.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{p.Status.PodIP},
				Conditions: discoveryv1.EndpointConditions{Ready: ptrTo(ready), Serving: ptrTo(ready), Terminating: ptrTo(false)},
				NodeName:   ptrTo(p.Spec.NodeName),
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: p.Name, UID: p.UID},
			})
		}
		slices.SortFunc(want.Endpoints, func(a, b discoveryv1.Endpoint) int { return strings.Compare(a.Addresses[0], b.Addresses[0]) })
		cur, err := ke.cs.DiscoveryV1().EndpointSlices(ns).Get(ctx, want.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = ke.cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, want, metav1.CreateOptions{})
		case err == nil:
			want.ResourceVersion = cur.ResourceVersion
			_, err = ke.cs.DiscoveryV1().EndpointSlices(ns).Update(ctx, want, metav1.UpdateOptions{})
		}
		require.NoError(t, err, "endpoint slice of %s/%s", ns, svc.Name)
	}
}

// apply server-side applies YAML as the admin.
func (ke *kubeEnv) apply(yaml string) {
	ke.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := k8s.Apply(ctx, ke.cluster.RESTConfig(), []byte(yaml), k8s.ApplyOptions{FieldManager: "skein-e2e"})
	require.NoError(ke.t, err)
}

// podExec runs argv in a pod played by this file: its cgroup (the API
// UID's), then its network namespace.
func (ke *kubeEnv) podExec(key string, argv ...string) (string, error) {
	ke.t.Helper()
	ke.mu.Lock()
	p := ke.pods[key]
	ke.mu.Unlock()
	if p == nil {
		return "", fmt.Errorf("no pod %s", key)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd, closeFD, err := inCgroupNetns(ctx, p.Cgroup, p.Netns, argv)
	if err != nil {
		return "", err
	}
	defer closeFD()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// podCurl runs curl in a pod with a short timeout.
func (ke *kubeEnv) podCurl(key string, args ...string) (string, error) {
	ke.t.Helper()
	return ke.podExec(key, append([]string{"curl", "-sS", "--max-time", "5"}, args...)...)
}

// echoFrom curls a URL from a pod and returns which pod answered.
func (ke *kubeEnv) echoFrom(key, url string) (string, error) {
	ke.t.Helper()
	out, err := ke.podCurl(key, url)
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, out)
	}
	return parseEcho(ke.t, out).Pod, nil
}

// kubectl runs /usr/bin/kubectl with a kubeconfig.
func kubectl(ctx context.Context, kubeconfig string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// canI runs `kubectl auth can-i` and returns its answer; exit status 1
// with "no" is an answer, not an error.
func canI(t *testing.T, kubeconfig string, args ...string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := kubectl(ctx, kubeconfig, append([]string{"auth", "can-i"}, args...)...)
	answer := strings.TrimSpace(out)
	if lines := strings.Split(answer, "\n"); len(lines) > 0 {
		answer = strings.TrimSpace(lines[len(lines)-1])
	}
	var exitErr *exec.ExitError
	if err != nil && !(errors.As(err, &exitErr) && exitErr.ExitCode() == 1 && answer == "no") {
		t.Fatalf("kubectl auth can-i %v: %v\n%s", args, err, out)
	}
	return answer == "yes"
}
