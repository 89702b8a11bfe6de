package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// skeinLab is the skein-lab binary the pods run as their echo backend,
// built by TestMain when running as root.
var skeinLab string

func TestMain(m *testing.M) {
	code := func() int {
		if privileged() {
			dir, err := os.MkdirTemp("", "skein-lab-test")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			skeinLab = filepath.Join(dir, "skein-lab")
			build := exec.Command("go", "build", "-o", skeinLab, "github.com/skeinmesh/skein/scripts/skein-lab")
			if out, err := build.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build skein-lab: %v\n%s", err, out)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// privileged reports whether privileged tests may run: as root, unless
// SKEIN_SKIP_PRIVILEGED is set (make test-unit).
func privileged() bool {
	return os.Geteuid() == 0 && os.Getenv("SKEIN_SKIP_PRIVILEGED") == ""
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Getenv("SKEIN_SKIP_PRIVILEGED") != "" {
		t.Skip("privileged tests disabled by SKEIN_SKIP_PRIVILEGED")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, cgroups and bpffs pins")
	}
}

var prefixSeq atomic.Int32

// testPrefix returns a prefix no other test (or test run) uses, and
// registers a Teardown so nothing is left even when the test fails.
func testPrefix(t *testing.T) string {
	t.Helper()
	p := fmt.Sprintf("sklt%d%c", os.Getpid()%10_000_000, 'a'+prefixSeq.Add(1)-1)
	t.Cleanup(func() {
		if err := Teardown(p); err != nil {
			t.Errorf("cleanup: teardown %s: %v", p, err)
		}
	})
	return p
}

func testTopology(t *testing.T) *Topology {
	t.Helper()
	echo := fmt.Sprintf(`["%s", "echo", "--listen", ":8080"]`, skeinLab)
	topo, err := Parse([]byte(`
nodes:
  - name: node-a
  - name: node-b
namespaces:
  - name: shop
    labels: {skein.io/mesh: enabled}
pods:
  - name: client
    namespace: shop
    node: node-a
    labels: {app: client}
    command: ["sleep", "infinity"]
  - name: echo-a
    namespace: shop
    node: node-a
    labels: {app: echo}
    ports: [{name: http, containerPort: 8080}]
    command: ` + echo + `
  - name: echo-b
    namespace: shop
    node: node-b
    labels: {app: echo}
    ports: [{name: http, containerPort: 8080}]
    command: ` + echo + `
services:
  - name: echo
    namespace: shop
    clusterIP: 10.96.0.10
    selector: {app: echo}
    ports: [{name: http, port: 80, targetPort: http}]
`))
	require.NoError(t, err)
	return topo
}

type echoJSON struct {
	Pod, Namespace, Node, Proto, Remote string
}

func curlEcho(t *testing.T, l *Lab, pod string, args ...string) echoJSON {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := l.Exec(ctx, pod, append([]string{"/usr/bin/curl", "-sS", "--max-time", "5"}, args...)...)
	require.NoError(t, err, "%s", out)
	var e echoJSON
	require.NoError(t, json.Unmarshal(out, &e), "%s", out)
	return e
}

// rootNetSnapshot is what the lab must never change in the root netns.
func rootNetSnapshot(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{{"-o", "link"}, {"-o", "addr"}, {"route", "show", "table", "all"}} {
		out, err := exec.Command("ip", args...).CombinedOutput()
		require.NoError(t, err, "%s", out)
		b.Write(out)
	}
	return b.String()
}

func TestPrivilegedLab(t *testing.T) {
	requireRoot(t)
	prefix := testPrefix(t)
	rootBefore := rootNetSnapshot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	l, err := Up(ctx, testTopology(t), Options{Prefix: prefix, Logf: t.Logf})
	require.NoError(t, err)
	defer l.Down()
	require.NoError(t, l.WaitTCP(ctx, "echo-a", 8080))
	require.NoError(t, l.WaitTCP(ctx, "shop/echo-b", 8080))
	client, echoA, echoB := l.Pod("client"), l.Pod("echo-a"), l.Pod("echo-b")
	require.Equal(t, "10.244.1.10", client.IP)
	require.Equal(t, "10.244.1.11", echoA.IP)
	require.Equal(t, "10.244.2.10", echoB.IP)
	require.Equal(t, "10.96.0.10", l.ServiceIP("echo"))
	var pids []int // every process the lab ran, to check that Down kills them
	var started []*exec.Cmd

	t.Run("same node", func(t *testing.T) {
		e := curlEcho(t, l, "client", "http://"+echoA.IP+":8080/x")
		require.Equal(t, echoJSON{Pod: "echo-a", Namespace: "shop", Node: "node-a", Proto: "HTTP/1.1", Remote: e.Remote}, e)
		require.True(t, strings.HasPrefix(e.Remote, client.IP+":"), "the source address is the client's: %s", e.Remote)
	})
	t.Run("other node", func(t *testing.T) {
		e := curlEcho(t, l, "shop/client", "http://"+echoB.IP+":8080/")
		require.Equal(t, "echo-b", e.Pod)
		require.Equal(t, "node-b", e.Node)
		require.True(t, strings.HasPrefix(e.Remote, client.IP+":"), "no NAT between nodes: %s", e.Remote)
	})
	t.Run("h2c prior knowledge", func(t *testing.T) {
		e := curlEcho(t, l, "echo-b", "--http2-prior-knowledge", "http://"+echoA.IP+":8080/")
		require.Equal(t, "echo-a", e.Pod)
		require.Equal(t, "HTTP/2.0", e.Proto)
	})
	t.Run("a service VIP is unreachable inside the lab", func(t *testing.T) {
		start := time.Now()
		out, err := l.Exec(ctx, "client", "/usr/bin/curl", "-sS", "--max-time", "5", "http://10.96.0.10/")
		require.Error(t, err, "nothing captured the VIP, so the connect must fail: %s", out)
		var exitErr *exec.ExitError
		require.ErrorAs(t, err, &exitErr)
		require.Equal(t, 7, exitErr.ExitCode(), "curl: couldn't connect (not a timeout): %s", out)
		require.Less(t, time.Since(start), 3*time.Second, "the node rejects it at once: no route")
		// The node has no route for it, and no default route at all.
		out, err = l.ExecNode(ctx, "node-a", "ip", "route", "get", "10.96.0.10")
		require.Error(t, err)
		require.Contains(t, string(out), "unreachable")
		for _, n := range []string{"node-a", "node-b"} {
			out, err = l.ExecNode(ctx, n, "ip", "route", "show", "default")
			require.NoError(t, err)
			require.Empty(t, strings.TrimSpace(string(out)), "node %s has a default route", n)
		}
		// The underlay is a bare bridge: no address, so it routes nothing.
		out, err = exec.Command("ip", "-n", prefix+"-underlay", "-o", "addr", "show", "scope", "global").CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Empty(t, strings.TrimSpace(string(out)))
	})
	t.Run("exec joins the pod cgroup and netns", func(t *testing.T) {
		out, err := l.Exec(ctx, "client", "sh", "-c",
			`grep ^0:: /proc/self/cgroup; readlink /proc/self/ns/net; echo "$SKEIN_LAB_POD $SKEIN_LAB_NAMESPACE $SKEIN_LAB_NODE"; test -d `+l.PinDir()+` && echo pins-visible`)
		require.NoError(t, err, "%s", out)
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		require.Len(t, lines, 4, "%s", out)
		cg2, err := cgroup2Mount()
		require.NoError(t, err)
		require.Equal(t, "0::"+strings.TrimPrefix(client.Cgroup, cg2), lines[0])
		require.Equal(t, "0::/"+prefix+"-node-a/kubepods/besteffort/pod"+client.UID, lines[0])
		var st syscall.Stat_t
		require.NoError(t, syscall.Stat(client.NetnsPath, &st))
		require.Equal(t, fmt.Sprintf("net:[%d]", st.Ino), lines[1])
		require.Equal(t, "client shop node-a", lines[2])
		require.Equal(t, "pins-visible", lines[3], "the mount namespace is kept (nsenter, not ip netns exec)")

		out, err = l.Exec(ctx, "client", "ip", "-4", "-o", "addr", "show", "dev", "eth0")
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), "inet "+client.IP+"/32")
	})
	t.Run("exec node runs in the node netns, outside kubepods", func(t *testing.T) {
		out, err := l.ExecNode(ctx, "node-b", "sh", "-c", "grep ^0:: /proc/self/cgroup; ip -4 -o addr show dev ul0")
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), "0::/"+prefix+"-node-b/host\n")
		require.Contains(t, string(out), "inet 192.168.77.2/24")
	})
	t.Run("start runs in the background in the pod", func(t *testing.T) {
		cmd, err := l.Start("echo-b", "sleep", "300")
		require.NoError(t, err)
		pids = append(pids, cmd.Process.Pid)
		started = append(started, cmd)
		cg, err := procCgroup2(cmd.Process.Pid)
		require.NoError(t, err)
		require.Equal(t, "/"+prefix+"-node-b/kubepods/besteffort/pod"+echoB.UID, cg)
	})
	t.Run("agent", func(t *testing.T) {
		agent := filepath.Join(t.TempDir(), "fake-agent")
		require.NoError(t, os.WriteFile(agent, []byte(`#!/bin/sh
echo "args: $*"
echo "cgroup: $(grep ^0:: /proc/self/cgroup)"
echo "addr: $(ip -4 -o addr show dev ul0 | awk '{print $4}')"
trap 'echo got-term; exit 0' TERM
while :; do sleep 0.1; done
`), 0o755))
		l.opts.AgentBinary = agent
		l.opts.AgentArgs = []string{"--log-level", "debug"}
		require.NoError(t, l.StartAgent("node-b", "--extra"))
		pid := l.AgentPid("node-b")
		require.NotZero(t, pid)
		pids = append(pids, pid)
		require.ErrorContains(t, l.StartAgent("node-b"), "already running")
		require.Eventually(t, func() bool { return strings.Contains(l.AgentLog("node-b"), "addr:") }, 5*time.Second, 20*time.Millisecond)
		log := l.AgentLog("node-b")
		cg2, _ := cgroup2Mount()
		want := "args: --node node-b --config " + l.ClusterPath() +
			" --cgroup-root " + cg2 + "/" + prefix + "-node-b/kubepods" +
			" --proxy-address 10.244.2.1 --node-ip 192.168.77.2" +
			" --admin-socket /run/" + prefix + "/node-b/admin.sock" +
			" --bpf-pin-root /sys/fs/bpf/" + prefix +
			" --accesslog-dir /run/" + prefix + "/accesslog" +
			" --log-level debug --extra\n"
		require.Contains(t, log, want)
		require.Contains(t, log, "cgroup: 0::/"+prefix+"-node-b/agent\n")
		require.Contains(t, log, "addr: 192.168.77.2/24\n")
		require.Equal(t, filepath.Join("/run", prefix, "node-b", "admin.sock"), l.AdminSocket("node-b"))

		require.NoError(t, l.StopAgent("node-b", syscall.SIGTERM))
		require.Zero(t, l.AgentPid("node-b"))
		require.Contains(t, l.AgentLog("node-b"), "got-term")
		require.NoError(t, l.StopAgent("node-b", syscall.SIGTERM), "no agent running is fine")
		// Started again, it is left for Down to kill.
		require.NoError(t, l.StartAgent("node-b"))
		pids = append(pids, l.AgentPid("node-b"))
	})
	t.Run("add, change and delete a pod", func(t *testing.T) {
		err := l.AddPod(ctx, PodSpec{
			Name: "late", Namespace: "shop", Node: "node-b", Labels: map[string]string{"app": "echo"},
			Ports:   []ContainerPort{{Name: "http", ContainerPort: 8080}},
			Command: []string{skeinLab, "echo", "--listen", ":8080"},
		})
		require.NoError(t, err)
		late := l.Pod("late")
		require.Equal(t, "10.244.2.11", late.IP)
		require.NoError(t, l.WaitTCP(ctx, "late", 8080))
		require.Equal(t, "late", curlEcho(t, l, "client", "http://"+late.IP+":8080/").Pod)
		require.Error(t, l.AddPod(ctx, PodSpec{Name: "late", Namespace: "shop", Node: "node-a"}), "duplicate")
		require.ErrorContains(t, l.AddPod(ctx, PodSpec{Name: "x", Namespace: "shop", Node: "node-z"}), `unknown node "node-z"`)

		objs, _ := decodeCluster(t, must(os.ReadFile(l.ClusterPath())))
		require.Contains(t, objs, "Pod shop/late")
		require.Len(t, objs["EndpointSlice shop/echo-lab"].(*discoveryv1.EndpointSlice).Endpoints, 3)

		require.NoError(t, l.SetPodReady("late", false))
		require.NoError(t, l.SetPodAnnotations("late", map[string]string{"skein.io/mesh": "disabled"}))
		require.NoError(t, l.SetObjects([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: shop}\n")))
		data := must(os.ReadFile(l.ClusterPath()))
		objs, _ = decodeCluster(t, data)
		for _, ep := range objs["EndpointSlice shop/echo-lab"].(*discoveryv1.EndpointSlice).Endpoints {
			require.Equal(t, ep.TargetRef.Name != "late", *ep.Conditions.Ready, ep.TargetRef.Name)
		}
		require.Equal(t, "disabled", objs["Pod shop/late"].(*corev1.Pod).Annotations["skein.io/mesh"])
		require.True(t, strings.HasSuffix(string(data), "kind: ConfigMap\nmetadata: {name: c, namespace: shop}\n"))
		require.ErrorContains(t, l.SetObjects([]byte("metadata: {}\n")), "apiVersion and kind are required")

		// A second process sees the same lab.
		o, err := Open(Options{Prefix: prefix})
		require.NoError(t, err)
		require.Equal(t, l.Pod("shop/late"), o.Pod("shop/late"))

		mainPids := cgroupPids(late.Cgroup)
		require.NotEmpty(t, mainPids)
		require.NoError(t, l.DeletePod(ctx, "late"))
		for _, pid := range mainPids {
			require.False(t, alive(pid), "pid %d of the deleted pod", pid)
		}
		require.NoDirExists(t, late.Cgroup)
		require.NoFileExists(t, late.NetnsPath)
		require.Empty(t, l.Pod("late").Name)
		objs, _ = decodeCluster(t, must(os.ReadFile(l.ClusterPath())))
		require.NotContains(t, objs, "Pod shop/late")
		require.Len(t, objs["EndpointSlice shop/echo-lab"].(*discoveryv1.EndpointSlice).Endpoints, 2)
		_, err = exec.Command("ip", "netns", "exec", prefix+"-node-b", "ip", "route", "get", late.IP).CombinedOutput()
		require.Error(t, err, "the route to the deleted pod goes with its veth")

		// Added again at once, it gets the same address and UID, and works.
		require.NoError(t, l.AddPod(ctx, PodSpec{
			Name: "late", Namespace: "shop", Node: "node-b",
			Command: []string{skeinLab, "echo", "--listen", ":8080"},
		}))
		again := l.Pod("late")
		require.Equal(t, late.IP, again.IP)
		require.Equal(t, late.UID, again.UID)
		require.NoError(t, l.WaitTCP(ctx, "late", 8080))
		require.Equal(t, "late", curlEcho(t, l, "client", "http://"+again.IP+":8080/").Pod)
		pids = append(pids, cgroupPids(again.Cgroup)...)
	})
	t.Run("the root netns is untouched", func(t *testing.T) {
		require.Equal(t, rootBefore, rootNetSnapshot(t))
	})

	for _, p := range []string{client.Cgroup, echoA.Cgroup, echoB.Cgroup} {
		pids = append(pids, cgroupPids(p)...)
	}
	require.NotEmpty(t, pids)
	require.NoError(t, l.Down())
	for _, cmd := range started {
		require.Error(t, cmd.Wait(), "killed by Down")
	}
	requireNoLeftovers(t, prefix, pids)
	require.NoError(t, l.Down(), "Down is idempotent")
	_, err = l.Exec(ctx, "client", "true")
	require.ErrorIs(t, err, ErrDown)
	require.Equal(t, rootBefore, rootNetSnapshot(t))
}

func TestPrivilegedTeardownAfterCrash(t *testing.T) {
	requireRoot(t)
	prefix := testPrefix(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := Up(ctx, testTopology(t), Options{Prefix: prefix})
	require.NoError(t, err)
	require.NoError(t, l.WaitTCP(ctx, "echo-a", 8080))
	var pids []int
	for _, p := range l.Pods() {
		pids = append(pids, cgroupPids(p.Cgroup)...)
	}
	require.Len(t, pids, 3)
	// A crash: the Lab is gone, a pod process died, the rest still runs.
	l = nil
	require.NoError(t, syscall.Kill(pids[0], syscall.SIGKILL))

	require.NoError(t, Teardown(prefix))
	requireNoLeftovers(t, prefix, pids)
	require.NoError(t, Teardown(prefix), "Teardown twice is fine")
}

func TestPrivilegedUpReplacesLeftovers(t *testing.T) {
	requireRoot(t)
	prefix := testPrefix(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topo := testTopology(t)
	first, err := Up(ctx, topo, Options{Prefix: prefix})
	require.NoError(t, err)
	old := cgroupPids(first.Pod("echo-a").Cgroup)
	require.NotEmpty(t, old)

	second, err := Up(ctx, topo, Options{Prefix: prefix})
	require.NoError(t, err, "Up cleans the leftovers of the same prefix first")
	for _, pid := range old {
		require.False(t, alive(pid))
	}
	require.Equal(t, first.Pod("echo-a").UID, second.Pod("echo-a").UID, "UIDs are stable across reruns")
	require.NoError(t, second.WaitTCP(ctx, "echo-a", 8080))
	require.Equal(t, "echo-a", curlEcho(t, second, "client", "http://10.244.1.11:8080/").Pod)
	require.NoError(t, second.Down())
	requireNoLeftovers(t, prefix, nil)
}

func TestPrivilegedUpFailureCleansUp(t *testing.T) {
	requireRoot(t)
	prefix := testPrefix(t)
	// Agents start last, so a missing agent binary fails Up after
	// everything else is built: all of it must go.
	_, err := Up(context.Background(), testTopology(t), Options{Prefix: prefix, AgentBinary: "/nonexistent/skein-agent"})
	require.ErrorContains(t, err, "/nonexistent/skein-agent")
	requireNoLeftovers(t, prefix, nil)
}

// requireNoLeftovers checks that nothing with the prefix is left: no
// netns, no cgroup, no pins, no state, no process.
func requireNoLeftovers(t *testing.T, prefix string, pids []int) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for line := range strings.Lines(string(out)) {
		require.False(t, strings.HasPrefix(line, prefix+"-"), "netns left: %s", line)
	}
	cg2, err := cgroup2Mount()
	require.NoError(t, err)
	entries, err := os.ReadDir(cg2)
	require.NoError(t, err)
	for _, e := range entries {
		require.False(t, strings.HasPrefix(e.Name(), prefix+"-"), "cgroup left: %s", e.Name())
	}
	require.NoDirExists(t, pinDir(prefix))
	require.NoDirExists(t, defaultStateDir(prefix))
	for _, pid := range pids {
		require.False(t, alive(pid), "process %d left", pid)
	}
	procs, err := os.ReadDir("/proc")
	require.NoError(t, err)
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !alive(pid) {
			continue
		}
		if cg, err := procCgroup2(pid); err == nil {
			require.False(t, strings.HasPrefix(cg, "/"+prefix+"-"), "process %d left in cgroup %s", pid, cg)
		}
	}
}
