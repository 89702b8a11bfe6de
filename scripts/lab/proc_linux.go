package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Bounds on waits for processes.
const (
	stopTimeout = 10 * time.Second // after the requested signal, before SIGKILL
	waitDelay   = 5 * time.Second  // exec.Cmd.WaitDelay: output pipes held by leftovers
)

// Environment of pod processes.
const (
	EnvPod       = "SKEIN_LAB_POD"
	EnvNamespace = "SKEIN_LAB_NAMESPACE"
	EnvNode      = "SKEIN_LAB_NODE"
)

// proc is a process this Lab started and reaps.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startProc(cmd *exec.Cmd) (*proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// waitBounded waits for the process to be reaped, at most killTimeout.
func (p *proc) waitBounded() {
	select {
	case <-p.done:
	case <-time.After(killTimeout):
	}
}

// command prepares argv to run in a cgroup and a network namespace: Go
// clones the child straight into the cgroup (CLONE_INTO_CGROUP), so it is
// there before it runs a single instruction, and the child is nsenter,
// which joins the netns and execs argv. Unlike `ip netns exec`, nsenter
// keeps the mount namespace, so /sys/fs/cgroup and /sys/fs/bpf stay
// visible. The returned function closes the cgroup fd; call it after Start.
func command(ctx context.Context, cgroupDir, netnsName string, argv []string, env []string) (*exec.Cmd, func(), error) {
	if len(argv) == 0 {
		return nil, nil, errors.New("no command given")
	}
	// nsenter would find the program with the same PATH; looking it up
	// here turns a typo into an error instead of an exit status 127.
	if _, err := exec.LookPath(argv[0]); err != nil {
		return nil, nil, err
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, nil, fmt.Errorf("find nsenter (util-linux): %w", err)
	}
	fd, err := unix.Open(cgroupDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open cgroup %s: %w", cgroupDir, err)
	}
	args := append([]string{"--net=" + NetnsPath(netnsName), "--"}, argv...)
	cmd := exec.CommandContext(ctx, nsenter, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	cmd.WaitDelay = waitDelay
	return cmd, func() { unix.Close(fd) }, nil
}

func podEnv(p *podState) []string {
	return []string{EnvPod + "=" + p.Name, EnvNamespace + "=" + p.namespace(), EnvNode + "=" + p.Node}
}

// podCommand prepares a command in a pod: its cgroup first, then its netns.
func (l *Lab) podCommand(ctx context.Context, pod string, argv []string) (*exec.Cmd, func(), *podState, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return nil, nil, nil, ErrDown
	}
	p, err := l.findPod(pod)
	if err != nil {
		return nil, nil, nil, err
	}
	cmd, closeFD, err := command(ctx, podCgroup(l.st.Cgroup2, l.st.Prefix, p.Node, p.UID), p.Netns, argv, podEnv(p))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pod %s: %w", p.Key(), err)
	}
	return cmd, closeFD, p, nil
}

// Exec runs argv in a pod (its cgroup first, then its netns) and returns
// its combined output. pod is "namespace/name", or a name if unique. A
// context without a deadline gets DefaultExecTimeout.
func (l *Lab) Exec(ctx context.Context, pod string, argv ...string) ([]byte, error) {
	ctx, cancel := boundContext(ctx)
	defer cancel()
	cmd, closeFD, p, err := l.podCommand(ctx, pod, argv)
	if err != nil {
		return nil, err
	}
	out, err := runCombined(cmd, closeFD)
	if err != nil {
		return out, fmt.Errorf("exec %q in pod %s: %w", strings.Join(argv, " "), p.Key(), err)
	}
	return out, nil
}

// Attach runs argv in a pod with the given standard streams and waits for
// it, bounded by ctx only: it is for interactive use (skein-lab exec).
func (l *Lab) Attach(ctx context.Context, pod string, stdin io.Reader, stdout, stderr io.Writer, argv ...string) error {
	cmd, closeFD, _, err := l.podCommand(ctx, pod, argv)
	if err != nil {
		return err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	err = cmd.Start()
	closeFD()
	if err != nil {
		return err
	}
	return cmd.Wait()
}

// Start starts argv in a pod in the background, with its output appended
// to the pod's log. Down kills it at the latest; call Wait to reap it.
func (l *Lab) Start(pod string, argv ...string) (*exec.Cmd, error) {
	cmd, closeFD, p, err := l.podCommand(context.Background(), pod, argv)
	if err != nil {
		return nil, err
	}
	defer closeFD()
	logf, err := os.OpenFile(l.podLogPath(p), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open pod log: %w", err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr.Setsid = true
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %q in pod %s: %w", strings.Join(argv, " "), p.Key(), err)
	}
	return cmd, nil
}

// ExecNode runs argv in a node's network namespace, in the node's "host"
// cgroup (beside kubepods, so the mesh never captures it), and returns its
// combined output; e.g. curl to the node agent's metrics port.
func (l *Lab) ExecNode(ctx context.Context, node string, argv ...string) ([]byte, error) {
	ctx, cancel := boundContext(ctx)
	defer cancel()
	l.mu.Lock()
	if l.down {
		l.mu.Unlock()
		return nil, ErrDown
	}
	n := l.st.node(node)
	if n == nil {
		l.mu.Unlock()
		return nil, fmt.Errorf("node %q: no such node in lab %s", node, l.st.Prefix)
	}
	cmd, closeFD, err := command(ctx, hostCgroup(l.st.Cgroup2, l.st.Prefix, n.Name), n.Netns, argv, []string{EnvNode + "=" + n.Name})
	l.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", node, err)
	}
	out, err := runCombined(cmd, closeFD)
	if err != nil {
		return out, fmt.Errorf("exec %q on node %s: %w", strings.Join(argv, " "), node, err)
	}
	return out, nil
}

func runCombined(cmd *exec.Cmd, closeFD func()) ([]byte, error) {
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Start()
	closeFD()
	if err == nil {
		err = cmd.Wait()
	}
	return buf.Bytes(), err
}

func boundContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultExecTimeout)
}

// WaitTCP waits until something accepts TCP connections on port of a pod,
// dialling from the pod's node (which the mesh does not capture), for at
// most the context's deadline or DefaultExecTimeout.
func (l *Lab) WaitTCP(ctx context.Context, pod string, port int) error {
	ctx, cancel := boundContext(ctx)
	defer cancel()
	l.mu.Lock()
	p, err := l.findPod(pod)
	var nodeNetns, addr string
	if err == nil {
		nodeNetns = l.st.node(p.Node).Netns
		addr = net.JoinHostPort(p.IP.String(), strconv.Itoa(port))
	}
	l.mu.Unlock()
	if err != nil {
		return err
	}
	for {
		err := inNetns(nodeNetns, func() error {
			// The socket is created on this thread, so in the node's netns.
			c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s in pod %s: %w (last: %v)", addr, pod, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startMain starts a pod's main command, if it has one, with its output in
// the pod's log. l.mu must be held.
func (l *Lab) startMain(p *podState) error {
	if len(p.Command) == 0 {
		return nil
	}
	cmd, closeFD, err := command(context.Background(), podCgroup(l.st.Cgroup2, l.st.Prefix, p.Node, p.UID), p.Netns, p.Command, podEnv(p))
	if err != nil {
		return fmt.Errorf("pod %s: %w", p.Key(), err)
	}
	defer closeFD()
	logPath := l.podLogPath(p)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open pod log: %w", err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: it outlives `skein-lab up` and ignores the
	// terminal's signals.
	cmd.SysProcAttr.Setsid = true
	pr, err := startProc(cmd)
	if err != nil {
		return fmt.Errorf("start command of pod %s: %w", p.Key(), err)
	}
	l.mains[p.Key()] = pr
	go func() {
		<-pr.done
		if f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND, 0); err == nil {
			fmt.Fprintf(f, "[skein-lab] main process %d exited: %v\n", cmd.Process.Pid, exitText(pr.err))
			f.Close()
		}
	}()
	return nil
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// StartAgent starts the agent binary on a node: in the node's network
// namespace and its agent cgroup (outside kubepods, so the agent's own
// sockets are never captured), with the lab's flags, then Options.AgentArgs
// and extraArgs. Its output is appended to AgentLogPath(node).
func (l *Lab) StartAgent(node string, extraArgs ...string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return ErrDown
	}
	n := l.st.node(node)
	if n == nil {
		return fmt.Errorf("node %q: no such node in lab %s", node, l.st.Prefix)
	}
	return l.startAgentLocked(n, extraArgs)
}

// AgentArgs returns the flags the lab passes to a node's agent (before
// Options.AgentArgs).
func (l *Lab) AgentArgs(node string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.st.node(node)
	if n == nil {
		return nil
	}
	return l.agentArgs(n)
}

func (l *Lab) agentArgs(n *nodeState) []string {
	st := l.st
	args := []string{
		"--node", n.Name,
		"--config", filepath.Join(st.StateDir, clusterFile),
		"--cgroup-root", podRootCgroup(st.Cgroup2, st.Prefix, n.Name),
		"--proxy-address", n.Gateway.String(),
		"--node-ip", n.IP.String(),
		"--admin-socket", filepath.Join(st.StateDir, n.Name, adminSocket),
		"--bpf-pin-root", st.PinDir,
		// The agent adds the node's name; the store goes with the lab.
		"--accesslog-dir", filepath.Join(st.StateDir, "accesslog"),
	}
	return append(args, l.caAgentArgs(n)...)
}

// StartAgentSuccessor starts a new agent on a node while the current one
// still runs, as a rolling upgrade does: the new agent takes the running
// one's listeners, and the old one drains and exits on its own. bin, if
// set, replaces the agent binary (an upgrade to another build).
func (l *Lab) StartAgentSuccessor(node, bin string, extraArgs ...string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return ErrDown
	}
	n := l.st.node(node)
	if n == nil {
		return fmt.Errorf("node %q: no such node in lab %s", node, l.st.Prefix)
	}
	if old := l.agents[n.Name]; old != nil {
		l.retired = append(l.retired, old)
	}
	delete(l.agents, n.Name)
	return l.startAgentBinLocked(n, bin, extraArgs, true)
}

func (l *Lab) startAgentLocked(n *nodeState, extraArgs []string) error {
	return l.startAgentBinLocked(n, "", extraArgs, false)
}

func (l *Lab) startAgentBinLocked(n *nodeState, bin string, extraArgs []string, successor bool) error {
	if bin == "" {
		bin = l.opts.AgentBinary
	}
	if bin == "" {
		return fmt.Errorf("start agent on %s: no agent binary: set Options.AgentBinary (skein-lab up --agent)", n.Name)
	}
	if pid := l.agentPid(n); pid > 0 && !successor {
		return fmt.Errorf("start agent on %s: already running (pid %d)", n.Name, pid)
	}
	argv := append([]string{bin}, l.agentArgs(n)...)
	argv = append(argv, l.opts.AgentArgs...)
	argv = append(argv, extraArgs...)
	dir := filepath.Join(l.st.StateDir, n.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("start agent on %s: %w", n.Name, err)
	}
	cmd, closeFD, err := command(context.Background(), agentCgroup(l.st.Cgroup2, l.st.Prefix, n.Name), n.Netns, argv, []string{EnvNode + "=" + n.Name})
	if err != nil {
		return fmt.Errorf("start agent on %s: %w", n.Name, err)
	}
	defer closeFD()
	logf, err := os.OpenFile(filepath.Join(dir, agentLogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start agent on %s: %w", n.Name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "[skein-lab] %s start: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr.Setsid = true
	pr, err := startProc(cmd)
	if err != nil {
		return fmt.Errorf("start agent on %s: %w", n.Name, err)
	}
	l.agents[n.Name] = pr
	if err := os.WriteFile(filepath.Join(dir, agentPidFile), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return fmt.Errorf("start agent on %s: write pid file: %w", n.Name, err)
	}
	l.opts.Logf("lab %s: agent on %s started (pid %d)", l.st.Prefix, n.Name, cmd.Process.Pid)
	return nil
}

// agentPid returns the pid of a node's running agent, or 0. It trusts the
// pid file only if that process is in the node's agent cgroup, so a reused
// pid is never signalled. l.mu must be held.
func (l *Lab) agentPid(n *nodeState) int {
	if pr := l.agents[n.Name]; pr != nil && pr.running() {
		return pr.cmd.Process.Pid
	}
	return pidInCgroup(filepath.Join(l.st.StateDir, n.Name, agentPidFile), l.st.Cgroup2, agentCgroup(l.st.Cgroup2, l.st.Prefix, n.Name))
}

// AgentPid returns the pid of a node's running agent, or 0 if none runs.
func (l *Lab) AgentPid(node string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.st.node(node)
	if n == nil {
		return 0
	}
	return l.agentPid(n)
}

// pidInCgroup reads a pid file and returns the pid if that process is
// alive and in cgroup dir, else 0.
func pidInCgroup(pidFile, cg2, dir string) int {
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 || !alive(pid) {
		return 0
	}
	cg, err := procCgroup2(pid)
	if err != nil || filepath.Join(cg2, cg) != dir {
		return 0
	}
	return pid
}

// StopAgent sends sig to a node's agent and waits for it to exit, at most
// 10s, then SIGKILLs it. No running agent is not an error.
func (l *Lab) StopAgent(node string, sig syscall.Signal) error {
	l.mu.Lock()
	n := l.st.node(node)
	if n == nil {
		l.mu.Unlock()
		return fmt.Errorf("node %q: no such node in lab %s", node, l.st.Prefix)
	}
	pr := l.agents[n.Name]
	pid := l.agentPid(n)
	pidFile := filepath.Join(l.st.StateDir, n.Name, agentPidFile)
	l.mu.Unlock()
	if pid == 0 {
		return nil
	}
	exited := func() bool { return !alive(pid) }
	if pr != nil && pr.cmd.Process.Pid == pid {
		exited = func() bool { return !pr.running() }
	}
	err := stopPid(pid, sig, exited)
	os.Remove(pidFile)
	if err != nil {
		return fmt.Errorf("stop agent on %s: %w", node, err)
	}
	l.opts.Logf("lab %s: agent on %s stopped (%s)", l.st.Prefix, node, sig)
	return nil
}

// stopPid signals a process, waits (bounded) until exited reports true,
// and falls back to SIGKILL.
func stopPid(pid int, sig syscall.Signal, exited func() bool) error {
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal pid %d: %w", pid, err)
	}
	if waitUntil(stopTimeout, exited) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if waitUntil(killTimeout, exited) {
		return fmt.Errorf("pid %d ignored %s for %s and was killed", pid, sig, stopTimeout)
	}
	return fmt.Errorf("pid %d still alive after SIGKILL", pid)
}

func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollEvery)
	}
}

// stopAgentsByPidFile SIGTERMs the agents recorded in the state dir, so
// they can detach and flush before the cgroup kill, and waits for them
// (bounded, all at once).
func stopAgentsByPidFile(stateDir, cg2, prefix string) {
	files, _ := filepath.Glob(filepath.Join(stateDir, "*", agentPidFile))
	var pids []int
	for _, f := range files {
		node := filepath.Base(filepath.Dir(f))
		if pid := pidInCgroup(f, cg2, agentCgroup(cg2, prefix, node)); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			pids = append(pids, pid)
		}
	}
	waitUntil(stopTimeout, func() bool {
		for _, pid := range pids {
			if alive(pid) {
				return false
			}
		}
		return true
	})
}

// WaitRetiredAgents waits until every agent replaced by
// StartAgentSuccessor has exited, at most d.
func (l *Lab) WaitRetiredAgents(d time.Duration) error {
	l.mu.Lock()
	retired := append([]*proc(nil), l.retired...)
	l.mu.Unlock()
	deadline := time.Now().Add(d)
	for _, p := range retired {
		select {
		case <-p.done:
		case <-time.After(time.Until(deadline)):
			return fmt.Errorf("retired agent pid %d still running after %s", p.cmd.Process.Pid, d)
		}
	}
	return nil
}
