package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skeinmesh/skein/scripts/lab"
)

// TestPrivilegedCLI drives the program as a user would: up with the demo
// topology, status, exec (with its exit status passed on), down.
func TestPrivilegedCLI(t *testing.T) {
	if os.Getenv("SKEIN_SKIP_PRIVILEGED") != "" {
		t.Skip("privileged tests disabled by SKEIN_SKIP_PRIVILEGED")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, cgroups and bpffs pins")
	}
	bin := filepath.Join(t.TempDir(), "skein-lab")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	prefix := fmt.Sprintf("skltc%d", os.Getpid()%10_000_000)
	t.Cleanup(func() {
		if err := lab.Teardown(prefix); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	run := func(args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"--prefix", prefix}, args...)...)
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out2, err := run("up", "-q", "--no-agents", "-f", filepath.Join("..", "topologies", "demo.yaml"))
	require.NoError(t, err, "%s", out2)
	require.Contains(t, out2, "shop/product-v1  node-a  10.244.1.11")
	require.Regexp(t, `shop/product\s+10\.96\.0\.10\s+80->8080`, out2)

	status, err := run("status")
	require.NoError(t, err, "%s", status)
	require.Contains(t, status, "legacy/outsider")

	// The echo servers come up asynchronously: retry, bounded.
	var body string
	require.Eventually(t, func() bool {
		body, err = run("exec", "client", "--", "curl", "-sS", "--max-time", "2", "http://10.244.2.10:8080/")
		return err == nil
	}, 10*time.Second, 100*time.Millisecond, "%s", body)
	var reply echoReply
	require.NoError(t, json.Unmarshal([]byte(body), &reply), "%s", body)
	require.Equal(t, "product-v2", reply.Pod)
	require.Equal(t, "node-b", reply.Node)

	_, err = run("exec", "shop/optout", "--", "sh", "-c", "exit 3")
	var exitErr *exec.ExitError
	require.True(t, errors.As(err, &exitErr))
	require.Equal(t, 3, exitErr.ExitCode(), "exec passes the exit status on")

	out2, err = run("exec", "nobody", "--", "true")
	require.Error(t, err)
	require.Contains(t, out2, `pod "nobody": no such pod`)

	out2, err = run("down")
	require.NoError(t, err, "%s", out2)
	_, err = os.Stat("/run/" + prefix)
	require.True(t, os.IsNotExist(err))
	netns, err := exec.Command("ip", "netns", "list").CombinedOutput()
	require.NoError(t, err)
	require.NotContains(t, string(netns), prefix+"-")

	status, err = run("status")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(status, "no lab"), status)
	_, err = run("down")
	require.NoError(t, err, "down twice is fine")
}
