//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skeinmesh/skein/agent/admin"
	"github.com/skeinmesh/skein/internal/testenv"
	"github.com/skeinmesh/skein/scripts/lab"
)

// binDir holds the binaries built once for all tests.
var binDir string

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 || os.Getenv("SKEIN_SKIP_PRIVILEGED") != "" {
			return m.Run() // every test skips
		}
		dir, err := os.MkdirTemp("", "skein-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		for _, pkg := range []string{"cmd/skein-agent", "cmd/agentctl", "cmd/skein-ca", "scripts/skein-lab"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(dir, filepath.Base(pkg)), "../"+pkg).CombinedOutput()
			if err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
				return 1
			}
		}
		binDir = dir
		return m.Run()
	}()
	os.Exit(code)
}

var labSeq atomic.Int32

// env is one test's lab with its agents.
type env struct {
	t   *testing.T
	lab *lab.Lab
}

// newEnv brings up a lab from topology YAML, starting agents unless
// noAgents; it is torn down when the test ends, whatever happens.
func newEnv(t *testing.T, topology string, agentArgs []string, noAgents bool) *env {
	t.Helper()
	return newEnvOpts(t, topology, func(o *lab.Options) {
		o.AgentArgs = append(o.AgentArgs, agentArgs...)
		if noAgents {
			o.AgentBinary = ""
		}
	})
}

// newEnvOpts is newEnv with the lab options adjusted by opt.
func newEnvOpts(t *testing.T, topology string, opt func(*lab.Options)) *env {
	t.Helper()
	testenv.RequirePrivileged(t)
	topo, err := lab.Parse([]byte(topology))
	require.NoError(t, err)
	prefix := fmt.Sprintf("ske%d%d", os.Getpid()%100000, labSeq.Add(1))
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join("/run", prefix, "ca", "ca.log")); err == nil {
				t.Logf("ca log:\n%s", tail(string(b), 30))
			}
			for _, n := range topo.Nodes {
				p := filepath.Join("/run", prefix, n.Name, "agent.log")
				if b, err := os.ReadFile(p); err == nil {
					t.Logf("agent log of %s:\n%s", n.Name, tail(string(b), 60))
				}
			}
		}
		require.NoError(t, lab.Teardown(prefix))
	})
	opts := lab.Options{Prefix: prefix, AgentArgs: []string{"--log-level", "debug"}, Logf: t.Logf,
		AgentBinary: filepath.Join(binDir, "skein-agent")}
	opt(&opts)
	os.Setenv("PATH", binDir+":"+os.Getenv("PATH"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, topo, opts)
	require.NoError(t, err)
	e := &env{t: t, lab: l}
	if opts.AgentBinary != "" {
		for _, n := range topo.Nodes {
			e.waitReady(n.Name)
		}
	}
	for _, p := range topo.Pods {
		for _, port := range p.Ports {
			wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
			require.NoError(t, l.WaitTCP(wctx, p.Namespace+"/"+p.Name, int(port.ContainerPort)))
			wcancel()
		}
	}
	return e
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitReady waits until the node's agent answers /readyz.
func (e *env) waitReady(node string) {
	e.t.Helper()
	require.Eventually(e.t, func() bool {
		out, err := e.lab.ExecNode(context.Background(), node, "curl", "-sf", "--max-time", "1", "http://127.0.0.1:15020/readyz")
		return err == nil && strings.Contains(string(out), "ready")
	}, 30*time.Second, 100*time.Millisecond, "agent on %s never became ready:\n%s", node, tail(e.lab.AgentLog(node), 30))
}

// exec runs a command in a pod and returns its combined output.
func (e *env) exec(pod string, argv ...string) (string, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := e.lab.Exec(ctx, pod, argv...)
	return string(out), err
}

// curl runs curl in a pod with a short timeout.
func (e *env) curl(pod string, args ...string) (string, error) {
	e.t.Helper()
	return e.exec(pod, append([]string{"curl", "-sS", "--max-time", "5"}, args...)...)
}

// mustCurl is curl that must succeed.
func (e *env) mustCurl(pod string, args ...string) string {
	e.t.Helper()
	out, err := e.curl(pod, args...)
	require.NoError(e.t, err, "curl %v from %s: %s", args, pod, out)
	return out
}

// status asks a node's agent for its status over the admin socket.
func (e *env) status(node string) admin.Status {
	e.t.Helper()
	var st admin.Status
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(e.t, admin.NewClient(e.lab.AdminSocket(node)).Get(ctx, admin.APIVersion+"/status", &st))
	return st
}

// agentctl runs the real agentctl against a node's agent.
func (e *env) agentctl(node string, args ...string) (string, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "agentctl"), append([]string{"--socket", e.lab.AdminSocket(node)}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o644) }
