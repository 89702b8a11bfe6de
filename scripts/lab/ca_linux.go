package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The lab's CA: skein-ca runs like a hostNetwork Deployment on the first
// node, listening on that node's underlay address, and every agent gets a
// bootstrap token for it (the lab's stand-in for a ServiceAccount token).
const (
	caDir       = "ca"
	caPort      = 15012
	caTokens    = "tokens"
	caRoots     = "roots.pem"
	caLogFile   = "ca.log"
	caPidFile   = "ca.pid"
	nodeCAToken = "ca-token"
)

// caNode is the node that hosts the CA.
func (l *Lab) caNode() *nodeState { return l.st.Nodes[0] }

// CAAddress is where the lab's CA listens, host:port.
func (l *Lab) CAAddress() string {
	return net.JoinHostPort(l.caNode().IP.String(), strconv.Itoa(caPort))
}

// CADir is the CA's directory: root keys, tokens, log, trust bundle.
func (l *Lab) CADir() string { return filepath.Join(l.st.StateDir, caDir) }

func caCgroup(cg2, prefix, node string) string {
	return filepath.Join(nodeCgroup(cg2, prefix, node), "ca")
}

// caAgentArgs are the agent flags that point it at the lab's CA.
func (l *Lab) caAgentArgs(n *nodeState) []string {
	if l.st.CABinary == "" {
		return nil
	}
	return []string{
		"--ca-address", l.CAAddress(),
		"--ca-roots", filepath.Join(l.CADir(), caRoots),
		"--ca-token-file", filepath.Join(l.st.StateDir, n.Name, nodeCAToken),
	}
}

// writeCATokens gives every node a random token and writes the CA's token
// file. Existing tokens are kept, so a restarted CA accepts running agents.
func (l *Lab) writeCATokens() error {
	if err := os.MkdirAll(l.CADir(), 0o700); err != nil {
		return fmt.Errorf("create ca dir: %w", err)
	}
	var lines []string
	for _, n := range l.st.Nodes {
		p := filepath.Join(l.st.StateDir, n.Name, nodeCAToken)
		tok, err := os.ReadFile(p)
		if err != nil {
			b := make([]byte, 24)
			if _, err := rand.Read(b); err != nil {
				return err
			}
			tok = []byte(hex.EncodeToString(b))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(p, tok, 0o600); err != nil {
				return fmt.Errorf("write ca token of %s: %w", n.Name, err)
			}
		}
		lines = append(lines, strings.TrimSpace(string(tok))+" "+n.Name)
	}
	return os.WriteFile(filepath.Join(l.CADir(), caTokens), []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

// StartCA starts skein-ca on the first node and waits until it serves.
func (l *Lab) StartCA(extraArgs ...string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return ErrDown
	}
	return l.startCALocked(extraArgs)
}

func (l *Lab) startCALocked(extraArgs []string) error {
	st := l.st
	if st.CABinary == "" {
		return fmt.Errorf("start ca: no CA binary: set Options.CABinary (skein-lab up --ca)")
	}
	if pid := l.caPid(); pid > 0 {
		return fmt.Errorf("start ca: already running (pid %d)", pid)
	}
	n := l.caNode()
	if err := mkCgroups(caCgroup(st.Cgroup2, st.Prefix, n.Name)); err != nil {
		return err
	}
	if err := l.writeCATokens(); err != nil {
		return err
	}
	roots := filepath.Join(l.CADir(), caRoots)
	argv := []string{st.CABinary, "serve",
		"--dir", filepath.Join(l.CADir(), "keys"),
		"--addr", l.CAAddress(),
		"--serving-ip", n.IP.String(),
		"--token-file", filepath.Join(l.CADir(), caTokens),
		"--config", filepath.Join(st.StateDir, clusterFile),
		"--roots-out", roots,
	}
	argv = append(argv, st.CAArgs...)
	argv = append(argv, extraArgs...)
	cmd, closeFD, err := command(context.Background(), caCgroup(st.Cgroup2, st.Prefix, n.Name), n.Netns, argv, nil)
	if err != nil {
		return fmt.Errorf("start ca: %w", err)
	}
	defer closeFD()
	logf, err := os.OpenFile(filepath.Join(l.CADir(), caLogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start ca: %w", err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "[skein-lab] %s start: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr.Setsid = true
	pr, err := startProc(cmd)
	if err != nil {
		return fmt.Errorf("start ca: %w", err)
	}
	l.ca = pr
	if err := os.WriteFile(filepath.Join(l.CADir(), caPidFile), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return err
	}
	// Serving means the bundle is written and the port answers.
	ok := waitUntil(15*time.Second, func() bool {
		if !pr.running() {
			return true
		}
		if _, err := os.Stat(roots); err != nil {
			return false
		}
		return inNetns(n.Netns, func() error {
			c, err := net.DialTimeout("tcp", l.CAAddress(), 200*time.Millisecond)
			if err != nil {
				return err
			}
			return c.Close()
		}) == nil
	})
	if !pr.running() || !ok {
		return fmt.Errorf("start ca: skein-ca did not come up; see %s", filepath.Join(l.CADir(), caLogFile))
	}
	l.opts.Logf("lab %s: ca on %s started (pid %d) at %s", st.Prefix, n.Name, cmd.Process.Pid, l.CAAddress())
	return nil
}

func (l *Lab) caPid() int {
	if l.ca != nil && l.ca.running() {
		return l.ca.cmd.Process.Pid
	}
	if len(l.st.Nodes) == 0 {
		return 0
	}
	return pidInCgroup(filepath.Join(l.CADir(), caPidFile), l.st.Cgroup2, caCgroup(l.st.Cgroup2, l.st.Prefix, l.caNode().Name))
}

// StopCA stops the lab's CA (bounded wait, then SIGKILL).
func (l *Lab) StopCA(sig syscall.Signal) error {
	l.mu.Lock()
	pid := l.caPid()
	l.mu.Unlock()
	if pid == 0 {
		return nil
	}
	return stopPid(pid, sig, func() bool { return !alive(pid) })
}

// CALog returns the CA's log.
func (l *Lab) CALog() string {
	b, _ := os.ReadFile(filepath.Join(l.CADir(), caLogFile))
	return string(b)
}
