// Package testenv holds what Skein's tests share about their environment:
// whether privileged tests may run, and where the cgroup2 hierarchy is.
package testenv

import (
	"os"
	"testing"
)

// RequirePrivileged skips the test unless it runs as root, which loading BPF
// programs and creating namespaces and cgroups needs. SKEIN_SKIP_PRIVILEGED=1
// skips them even as root (make test-unit).
func RequirePrivileged(t testing.TB) {
	t.Helper()
	if os.Getenv("SKEIN_SKIP_PRIVILEGED") != "" {
		t.Skip("privileged tests disabled by SKEIN_SKIP_PRIVILEGED")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads BPF programs and creates namespaces and cgroups")
	}
}
