package lab

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Bounds of the waits for processes to die and cgroups to empty.
const (
	killTimeout = 10 * time.Second
	pollEvery   = 10 * time.Millisecond
)

// cgroup2Mount returns where the cgroup v2 hierarchy is mounted: read from
// /proc/self/mountinfo, because it is /sys/fs/cgroup on most nodes and
// /sys/fs/cgroup/unified on hybrid hosts.
func cgroup2Mount() (string, error) {
	p, err := mountOf("cgroup2", "")
	if err != nil {
		return "", fmt.Errorf("find cgroup2 mount: %w", err)
	}
	return p, nil
}

// mountOf returns the mount point of the first mount of fstype (at the
// given mount point, if not empty), or an error wrapping fs.ErrNotExist.
func mountOf(fstype, at string) (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("open mountinfo: %w", err)
	}
	defer f.Close()
	return parseMountinfo(f, fstype, at)
}

// parseMountinfo scans mountinfo lines, which look like
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
func parseMountinfo(r io.Reader, fstype, at string) (string, error) {
	s := bufio.NewScanner(r)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		sep := slices.Index(fields, "-")
		if sep < 5 || sep+1 >= len(fields) || fields[sep+1] != fstype {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if at == "" || mp == at {
			return mp, nil
		}
	}
	if err := s.Err(); err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	return "", fmt.Errorf("no %s mount: %w", fstype, fs.ErrNotExist)
}

// unescapeMountinfo undoes the octal escapes of mountinfo (\040 is a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ensureBpffs mounts bpffs at /sys/fs/bpf unless it is mounted there.
func ensureBpffs() error {
	if _, err := mountOf("bpf", bpffsRoot); err == nil {
		return nil
	}
	if err := os.MkdirAll(bpffsRoot, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", bpffsRoot, err)
	}
	if err := unix.Mount("bpf", bpffsRoot, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs at %s: %w", bpffsRoot, err)
	}
	return nil
}

// mkCgroups creates cgroup directories (and their parents).
func mkCgroups(dirs ...string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create cgroup %s: %w", d, err)
		}
	}
	return nil
}

// populated reports whether a cgroup or any cgroup below it has a live
// process, from cgroup.events.
func populated(dir string) (bool, error) {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return false, err
	}
	for line := range bytes.Lines(data) {
		if f := bytes.Fields(line); len(f) == 2 && string(f[0]) == "populated" {
			return string(f[1]) == "1", nil
		}
	}
	return false, fmt.Errorf("no populated field in %s/cgroup.events", dir)
}

// killCgroup SIGKILLs every process in a cgroup subtree and waits (bounded)
// until the subtree is empty. A missing cgroup is not an error.
func killCgroup(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0o644)
	if errors.Is(err, fs.ErrNotExist) {
		// Kernels before 5.14 have no cgroup.kill: kill pid by pid, which
		// needs repeating while processes fork.
		err = nil
	}
	if err != nil {
		return fmt.Errorf("kill cgroup %s: %w", dir, err)
	}
	deadline := time.Now().Add(killTimeout)
	for {
		pop, err := populated(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("kill cgroup %s: %w", dir, err)
		}
		if !pop {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kill cgroup %s: processes %v still there after %s", dir, cgroupPids(dir), killTimeout)
		}
		for _, pid := range cgroupPids(dir) {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		time.Sleep(pollEvery)
	}
}

// cgroupPids returns the processes of a cgroup subtree.
func cgroupPids(dir string) []int {
	var pids []int
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for f := range strings.FieldsSeq(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// removeCgroupTree removes a cgroup and every cgroup below it, deepest
// first. The subtree must be empty of processes. A missing cgroup is not
// an error.
func removeCgroupTree(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk cgroup %s: %w", dir, err)
	}
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	var errs []error
	for _, d := range dirs {
		if err := rmdirCgroup(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// rmdirCgroup removes one cgroup, retrying briefly on EBUSY: the kernel
// can report a cgroup busy for a moment after its last process died.
func rmdirCgroup(d string) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := unix.Rmdir(d)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", d, err)
		}
		time.Sleep(pollEvery)
	}
}

// procCgroup2 returns a process's cgroup v2 path (relative to the cgroup2
// mount), from the "0::" line of /proc/<pid>/cgroup.
func procCgroup2(pid int) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			return rest, nil
		}
	}
	return "", fmt.Errorf("pid %d: no cgroup2 line in /proc/%d/cgroup", pid, pid)
}

// alive reports whether a process exists and is not a zombie.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and
	// may itself contain spaces and parentheses.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return false
	}
	return data[i+2] != 'Z' && data[i+2] != 'X'
}

// killNetnsProcesses SIGKILLs the processes whose network namespace is one
// of the named ones, other than this process, and waits (bounded) for
// them to die. It catches what runs in the lab outside its cgroups, such as
// `ip netns exec` shells.
func killNetnsProcesses(names []string) error {
	type nsID struct{ dev, ino uint64 }
	ids := map[nsID]bool{}
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Stat(NetnsPath(n), &st); err == nil {
			ids[nsID{st.Dev, st.Ino}] = true
		}
	}
	if len(ids) == 0 {
		return nil
	}
	find := func() []int {
		var pids []int
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			var st unix.Stat_t
			if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st); err != nil {
				continue
			}
			if ids[nsID{st.Dev, st.Ino}] && alive(pid) {
				pids = append(pids, pid)
			}
		}
		return pids
	}
	deadline := time.Now().Add(killTimeout)
	for {
		pids := find()
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kill processes in lab netns: %v still alive after %s", pids, killTimeout)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(pollEvery)
	}
}
