//go:build linux

package cgroup

import (
	"fmt"
	"syscall"
)

// ID returns the cgroup id of a cgroup v2 directory: its inode number, which
// is what bpf_get_current_cgroup_id and friends return.
func ID(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat cgroup %s: %w", path, err)
	}
	return st.Ino, nil
}
