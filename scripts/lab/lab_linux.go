package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// Lab is a running lab cluster. Its methods are safe for concurrent use.
type Lab struct {
	opts Options

	mu     sync.Mutex
	st     *state
	agents map[string]*proc // agents this process started, by node
	mains  map[string]*proc // pod main processes this process started, by pod key
	ca     *proc            // the CA, if this process started it
	// retired are agents replaced by StartAgentSuccessor, draining.
	retired []*proc
	down    bool
}

// PodInfo describes a lab pod.
type PodInfo struct {
	Name      string
	Namespace string
	Node      string
	// IP is the pod's address, e.g. 10.244.1.10.
	IP  string
	UID string
	// Cgroup is the pod's cgroup directory (absolute path).
	Cgroup string
	// Netns is the name of the pod's network namespace; NetnsPath its path.
	Netns     string
	NetnsPath string
	Labels    map[string]string
	Ready     bool
}

// NodeInfo describes a lab node.
type NodeInfo struct {
	Name string
	// IP is the node's underlay address, e.g. 192.168.77.1.
	IP      string
	PodCIDR string
	// Gateway is the pods' gateway and the node proxy's address, 10.244.i.1.
	Gateway   string
	Netns     string
	NetnsPath string
	// Cgroup is the node's parent cgroup; pods are under Cgroup/kubepods.
	Cgroup string
}

// ServiceInfo describes a lab Service.
type ServiceInfo struct {
	Name      string
	Namespace string
	ClusterIP string
	Ports     []ServicePort
}

// Up builds a lab: it first removes the leftovers of a lab with the same
// prefix, then creates the underlay, the nodes, the pods, the cgroups and
// the cluster YAML, starts the pods' commands and, if opts.AgentBinary is
// set, one agent per node. On error it tears down what it made.
func Up(ctx context.Context, topo *Topology, opts Options) (*Lab, error) {
	opts, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("lab up: needs root (network namespaces, cgroups, bpffs)")
	}
	if err := topo.Validate(); err != nil {
		return nil, err
	}
	if err := topo.readObjects(); err != nil {
		return nil, err
	}
	st, err := plan(topo, opts.Prefix)
	if err != nil {
		return nil, err
	}
	for _, d := range topo.objectDocs {
		st.Objects = append(st.Objects, string(d))
	}
	st.StateDir = opts.StateDir
	st.AgentBinary = opts.AgentBinary
	st.AgentArgs = slices.Clone(opts.AgentArgs)
	st.CABinary = opts.CABinary
	st.CAArgs = slices.Clone(opts.CAArgs)
	st.PinDir = pinDir(opts.Prefix)
	if st.Cgroup2, err = cgroup2Mount(); err != nil {
		return nil, err
	}
	if err := TeardownOptions(opts); err != nil {
		return nil, fmt.Errorf("clean up leftovers of lab %s: %w", opts.Prefix, err)
	}
	l := &Lab{opts: opts, st: st, agents: map[string]*proc{}, mains: map[string]*proc{}}
	if err := l.build(ctx); err != nil {
		return nil, errors.Join(err, l.Down())
	}
	return l, nil
}

func (l *Lab) build(ctx context.Context) error {
	st, logf := l.st, l.opts.Logf
	if err := ensureBpffs(); err != nil {
		return err
	}
	if err := os.MkdirAll(st.PinDir, 0o700); err != nil {
		return fmt.Errorf("create pin dir: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(st.StateDir, podLogDir), 0o755); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(st.StateDir, markerFile), []byte(st.Prefix+"\n"), 0o644); err != nil {
		return fmt.Errorf("mark state dir: %w", err)
	}
	if err := ensureNetnsDir(); err != nil {
		return err
	}
	logf("lab %s: underlay %s", st.Prefix, st.Underlay)
	if err := setupUnderlay(st.Underlay); err != nil {
		return err
	}
	for _, n := range st.Nodes {
		if err := ctx.Err(); err != nil {
			return err
		}
		logf("lab %s: node %s (%s, pods %s)", st.Prefix, n.Name, n.IP, n.PodCIDR)
		if err := os.MkdirAll(filepath.Join(st.StateDir, n.Name), 0o755); err != nil {
			return fmt.Errorf("create state dir of node %s: %w", n.Name, err)
		}
		if err := mkCgroups(
			filepath.Join(podRootCgroup(st.Cgroup2, st.Prefix, n.Name), "besteffort"),
			agentCgroup(st.Cgroup2, st.Prefix, n.Name),
			hostCgroup(st.Cgroup2, st.Prefix, n.Name),
		); err != nil {
			return err
		}
		if err := setupNode(st, n); err != nil {
			return err
		}
	}
	for _, p := range st.Pods {
		if err := ctx.Err(); err != nil {
			return err
		}
		logf("lab %s: pod %s on %s (%s)", st.Prefix, p.Key(), p.Node, p.IP)
		if err := l.createPod(p); err != nil {
			return err
		}
	}
	if err := l.writeLocked(); err != nil {
		return err
	}
	for _, p := range st.Pods {
		if err := l.startMain(p); err != nil {
			return err
		}
	}
	if st.CABinary != "" {
		if err := l.startCALocked(nil); err != nil {
			return err
		}
	}
	if st.AgentBinary != "" {
		for _, n := range st.Nodes {
			if err := l.startAgentLocked(n, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// createPod makes a pod's cgroup and network.
func (l *Lab) createPod(p *podState) error {
	st := l.st
	if err := mkCgroups(podCgroup(st.Cgroup2, st.Prefix, p.Node, p.UID)); err != nil {
		return err
	}
	return setupPod(st.node(p.Node), p)
}

// Open returns the lab that a previous Up (in this or another process)
// left in opts.StateDir, for exec, status and changes. It starts nothing.
func Open(opts Options) (*Lab, error) {
	opts, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	st, err := loadState(opts.StateDir)
	if err != nil {
		return nil, err
	}
	if st.Prefix != opts.Prefix {
		return nil, fmt.Errorf("lab state in %s is for prefix %q, not %q", opts.StateDir, st.Prefix, opts.Prefix)
	}
	if opts.AgentBinary == "" {
		opts.AgentBinary = st.AgentBinary
	}
	if opts.AgentArgs == nil {
		opts.AgentArgs = st.AgentArgs
	}
	return &Lab{opts: opts, st: st, agents: map[string]*proc{}, mains: map[string]*proc{}}, nil
}

// Down stops the lab's agents (SIGTERM, bounded), kills every process in
// its cgroups and namespaces, and removes its pins, cgroups, namespaces and
// state directory. It is idempotent.
func (l *Lab) Down() error {
	l.mu.Lock()
	l.down = true
	procs := slices.Collect(maps.Values(l.agents))
	procs = append(procs, slices.Collect(maps.Values(l.mains))...)
	l.mu.Unlock()
	err := TeardownOptions(l.opts)
	for _, p := range procs {
		p.waitBounded()
	}
	return err
}

// Teardown removes every trace of the lab with this prefix and the default
// state directory (/run/<prefix>), whether or not a process still holds
// its Lab: it works after a crash. Missing pieces are not errors, so it can
// run any number of times.
func Teardown(prefix string) error {
	return TeardownOptions(Options{Prefix: prefix})
}

// TeardownOptions is Teardown for a lab with a state directory of its own.
// In order, it stops the agents found by their pid files (SIGTERM, so they
// can detach), kills every process in the lab's cgroups (cgroup.kill, then
// waits until they are empty) and in its network namespaces, removes the
// BPF pin directory, removes the cgroups bottom-up, deletes the network
// namespaces and removes the state directory.
func TeardownOptions(opts Options) error {
	opts, err := opts.resolve()
	if err != nil {
		return err
	}
	prefix := opts.Prefix
	var errs []error
	cg2, err := cgroup2Mount()
	if err != nil {
		errs = append(errs, err)
	}
	var nodeCgroups []string
	if cg2 != "" {
		entries, err := os.ReadDir(cg2)
		if err != nil {
			errs = append(errs, fmt.Errorf("list cgroups: %w", err))
		}
		for _, e := range entries {
			if e.IsDir() && strings.HasPrefix(e.Name(), prefix+"-") {
				nodeCgroups = append(nodeCgroups, filepath.Join(cg2, e.Name()))
			}
		}
		stopAgentsByPidFile(opts.StateDir, cg2, prefix)
	}
	for _, d := range nodeCgroups {
		if err := killCgroup(d); err != nil {
			errs = append(errs, err)
		}
	}
	names, err := listNetns(prefix + "-")
	if err != nil {
		errs = append(errs, err)
	}
	if err := killNetnsProcesses(names); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(pinDir(prefix)); err != nil {
		errs = append(errs, fmt.Errorf("remove pins: %w", err))
	}
	for _, d := range nodeCgroups {
		if err := removeCgroupTree(d); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range names {
		if err := deleteNetns(n); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeStateDir(opts); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeStateDir removes the state directory if it is the default one or
// carries the lab's marker: a mistyped --state-dir never deletes a
// directory the lab did not make.
func removeStateDir(opts Options) error {
	dir := opts.StateDir
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	marker, _ := os.ReadFile(filepath.Join(dir, markerFile))
	if dir != defaultStateDir(opts.Prefix) && strings.TrimSpace(string(marker)) != opts.Prefix {
		entries, _ := os.ReadDir(dir)
		if len(entries) > 0 {
			return fmt.Errorf("remove state dir %s: it has no %s marker for lab %s, so it is not the lab's: remove it yourself",
				dir, markerFile, opts.Prefix)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove state dir: %w", err)
	}
	return nil
}

// Prefix returns the lab's prefix.
func (l *Lab) Prefix() string { return l.opts.Prefix }

// StateDir returns the lab's state directory.
func (l *Lab) StateDir() string { return l.opts.StateDir }

// ClusterPath returns the path of the cluster YAML the agents read.
func (l *Lab) ClusterPath() string { return filepath.Join(l.opts.StateDir, clusterFile) }

// PinDir returns the BPF pin root of the lab's agents.
func (l *Lab) PinDir() string { return pinDir(l.opts.Prefix) }

// NodeNetns returns the path of a node's network namespace, or "" for an
// unknown node.
func (l *Lab) NodeNetns(node string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.st.node(node); n != nil {
		return NetnsPath(n.Netns)
	}
	return ""
}

// AdminSocket returns the path of a node agent's admin socket.
func (l *Lab) AdminSocket(node string) string {
	return filepath.Join(l.opts.StateDir, node, adminSocket)
}

// AgentLogPath returns the path of a node agent's log.
func (l *Lab) AgentLogPath(node string) string {
	return filepath.Join(l.opts.StateDir, node, agentLogFile)
}

// AgentLog returns the contents of a node agent's log (stdout and stderr),
// or "" if there is none.
func (l *Lab) AgentLog(node string) string {
	data, _ := os.ReadFile(l.AgentLogPath(node))
	return string(data)
}

// PodLogPath returns the path of the log of a pod's main process and of
// the processes started with Start.
func (l *Lab) PodLogPath(pod string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, err := l.findPod(pod)
	if err != nil {
		return ""
	}
	return l.podLogPath(p)
}

func (l *Lab) podLogPath(p *podState) string {
	return filepath.Join(l.opts.StateDir, podLogDir, p.namespace()+"_"+p.Name+".log")
}

// Nodes returns the lab's nodes, in topology order.
func (l *Lab) Nodes() []NodeInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []NodeInfo
	for _, n := range l.st.Nodes {
		out = append(out, NodeInfo{
			Name:      n.Name,
			IP:        n.IP.String(),
			PodCIDR:   n.PodCIDR.String(),
			Gateway:   n.Gateway.String(),
			Netns:     n.Netns,
			NetnsPath: NetnsPath(n.Netns),
			Cgroup:    nodeCgroup(l.st.Cgroup2, l.st.Prefix, n.Name),
		})
	}
	return out
}

// Pods returns the lab's pods, in creation order.
func (l *Lab) Pods() []PodInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []PodInfo
	for _, p := range l.st.Pods {
		out = append(out, l.podInfo(p))
	}
	return out
}

// Pod returns a pod by "namespace/name", or by name if that is unique. An
// unknown or ambiguous name gives the zero PodInfo.
func (l *Lab) Pod(name string) PodInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, err := l.findPod(name)
	if err != nil {
		return PodInfo{}
	}
	return l.podInfo(p)
}

func (l *Lab) podInfo(p *podState) PodInfo {
	return PodInfo{
		Name:      p.Name,
		Namespace: p.namespace(),
		Node:      p.Node,
		IP:        p.IP.String(),
		UID:       p.UID,
		Cgroup:    podCgroup(l.st.Cgroup2, l.st.Prefix, p.Node, p.UID),
		Netns:     p.Netns,
		NetnsPath: NetnsPath(p.Netns),
		Labels:    maps.Clone(p.Labels),
		Ready:     p.ready(),
	}
}

// Services returns the lab's Services.
func (l *Lab) Services() []ServiceInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []ServiceInfo
	for _, s := range l.st.Services {
		out = append(out, ServiceInfo{Name: s.Name, Namespace: s.namespace(), ClusterIP: s.ClusterIP, Ports: slices.Clone(s.Ports)})
	}
	return out
}

// ServiceIP returns the cluster IP of a Service by "namespace/name", or by
// name if that is unique; "" if there is no such Service.
func (l *Lab) ServiceIP(name string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var found []string
	for _, s := range l.st.Services {
		if s.Key() == name || s.Name == name && !strings.Contains(name, "/") {
			found = append(found, s.ClusterIP)
		}
	}
	if len(found) != 1 {
		return ""
	}
	return found[0]
}

// findPod looks a pod up by "namespace/name", or by name if unique.
// l.mu must be held.
func (l *Lab) findPod(name string) (*podState, error) {
	var found []*podState
	for _, p := range l.st.Pods {
		if p.Key() == name || p.Name == name && !strings.Contains(name, "/") {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return nil, fmt.Errorf("pod %q: no such pod in lab %s", name, l.st.Prefix)
	default:
		var keys []string
		for _, p := range found {
			keys = append(keys, p.Key())
		}
		return nil, fmt.Errorf("pod %q: ambiguous, say which: %s", name, strings.Join(keys, ", "))
	}
}

// WriteCluster rewrites cluster.yaml (and the lab state) from the lab's
// current objects.
func (l *Lab) WriteCluster() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return ErrDown
	}
	return l.writeLocked()
}

func (l *Lab) writeLocked() error {
	if err := l.st.save(); err != nil {
		return err
	}
	return l.st.writeCluster()
}

// SetObjects replaces the extra objects (routes, policies: each argument a
// YAML stream of one or more documents) and rewrites cluster.yaml. Every
// document needs an apiVersion and a kind; the objects are otherwise
// written as given, so tests can feed the agent invalid ones.
func (l *Lab) SetObjects(docs ...[]byte) error {
	var objs []string
	for i, d := range docs {
		if err := checkObjects(d); err != nil {
			return fmt.Errorf("set objects: argument %d: %w", i, err)
		}
		objs = append(objs, string(d))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return ErrDown
	}
	l.st.Objects = objs
	return l.writeLocked()
}

// SetPodAnnotations replaces a pod's annotations and rewrites cluster.yaml.
func (l *Lab) SetPodAnnotations(name string, annotations map[string]string) error {
	var errs []error
	validateAnnotations(func(_, field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("pod %s: field %s: %s", name, field, fmt.Sprintf(format, args...)))
	}, "", "annotations", annotations)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return ErrDown
	}
	p, err := l.findPod(name)
	if err != nil {
		return err
	}
	p.Annotations = maps.Clone(annotations)
	return l.writeLocked()
}

// SetPodReady sets a pod's readiness, which flips its Pod conditions and
// its endpoints' ready and serving conditions, and rewrites cluster.yaml.
func (l *Lab) SetPodReady(name string, ready bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return ErrDown
	}
	p, err := l.findPod(name)
	if err != nil {
		return err
	}
	p.Ready = &ready
	return l.writeLocked()
}

// AddPod adds a pod to the running lab: its namespace, veth and cgroup,
// then rewrites cluster.yaml and starts its command.
func (l *Lab) AddPod(ctx context.Context, spec PodSpec) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return ErrDown
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	nodes := map[string]bool{}
	for _, n := range l.st.Nodes {
		nodes[n.Name] = true
	}
	namespaces := map[string]bool{defaultNamespace: true}
	for _, ns := range l.st.Namespaces {
		namespaces[ns.Name] = true
	}
	var errs []error
	for _, e := range validatePod(spec, nodes, namespaces) {
		errs = append(errs, fmt.Errorf("pod %s: field %s: %s", spec.Key(), e.field, e.msg))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	p, err := l.st.addPod(spec)
	if err != nil {
		return err
	}
	l.opts.Logf("lab %s: add pod %s on %s (%s)", l.st.Prefix, p.Key(), p.Node, p.IP)
	if err := l.createPod(p); err != nil {
		return errors.Join(err, l.removePodLocked(p))
	}
	if err := l.writeLocked(); err != nil {
		return err
	}
	return l.startMain(p)
}

// DeletePod kills a pod's processes, removes its cgroup and namespace, and
// rewrites cluster.yaml without it.
func (l *Lab) DeletePod(ctx context.Context, name string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return ErrDown
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := l.findPod(name)
	if err != nil {
		return err
	}
	l.opts.Logf("lab %s: delete pod %s", l.st.Prefix, p.Key())
	if err := l.removePodLocked(p); err != nil {
		return err
	}
	return l.writeLocked()
}

// removePodLocked kills a pod's processes and removes its cgroup, its
// network namespace (which takes the veth and the node's route with it) and
// its place in the state.
func (l *Lab) removePodLocked(p *podState) error {
	st := l.st
	cg := podCgroup(st.Cgroup2, st.Prefix, p.Node, p.UID)
	var errs []error
	if err := killCgroup(cg); err != nil {
		errs = append(errs, err)
	}
	if err := killNetnsProcesses([]string{p.Netns}); err != nil {
		errs = append(errs, err)
	}
	if err := removeCgroupTree(cg); err != nil {
		errs = append(errs, err)
	}
	if err := removePodLink(st.node(p.Node), p); err != nil {
		errs = append(errs, err)
	}
	if err := deleteNetns(p.Netns); err != nil {
		errs = append(errs, err)
	}
	if m := l.mains[p.Key()]; m != nil {
		m.waitBounded()
		delete(l.mains, p.Key())
	}
	st.Pods = slices.DeleteFunc(st.Pods, func(o *podState) bool { return o == p })
	return errors.Join(errs...)
}
