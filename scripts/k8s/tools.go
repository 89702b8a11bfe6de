package k8s

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

//go:embed tools.sh
var toolsScript string

// Versions of the programs the cluster uses, as tools.sh builds them.
const (
	KubeVersion = "v1.37.2"
	HelmVersion = "v3.22.0"
)

// Tool names for EnsureTool.
const (
	ToolKubeAPIServer = "kube-apiserver"
	ToolHelm          = "helm"
)

// ErrNoBuild is returned by EnsureTool when a tool is not cached and
// SKEIN_K8S_NO_BUILD forbids building it.
var ErrNoBuild = errors.New("not built yet and SKEIN_K8S_NO_BUILD is set")

// EnsureTool returns the path of a tool, building it into the cache first
// if needed (kube-apiserver: minutes; helm: about one). The environment
// variables KUBE_APISERVER and HELM name a binary to use instead.
// Concurrent callers, in this process or others, wait for one build.
func EnsureTool(ctx context.Context, name string) (string, error) {
	env := map[string]string{ToolKubeAPIServer: "KUBE_APISERVER", ToolHelm: "HELM"}[name]
	if env == "" {
		return "", fmt.Errorf("unknown tool %q", name)
	}
	if p := os.Getenv(env); p != "" {
		return p, nil
	}
	if os.Getenv("SKEIN_K8S_NO_BUILD") != "" {
		if p, ok := cachedTool(name); ok {
			return p, nil
		}
		return "", fmt.Errorf("%s: %w", name, ErrNoBuild)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", "-c", toolsScript, "tools.sh", name)
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), "KUBE_VERSION="+KubeVersion, "HELM_VERSION="+HelmVersion)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", name, err, tail(stderr.String(), 20))
	}
	return strings.TrimSpace(string(out)), nil
}

// cachedTool returns where tools.sh puts a tool, and whether it is there.
func cachedTool(name string) (string, bool) {
	cache := os.Getenv("SKEIN_TOOLS_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, _ := os.UserHomeDir()
			base = home + "/.cache"
		}
		cache = base + "/skein"
	}
	version := map[string]string{ToolKubeAPIServer: KubeVersion, ToolHelm: HelmVersion}[name]
	p := fmt.Sprintf("%s/%s-%s/%s", cache, name, version, name)
	st, err := os.Stat(p)
	return p, err == nil && st.Mode()&0o111 != 0
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
