package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ErrNoCgroup2 is returned when no cgroup v2 hierarchy is mounted.
var ErrNoCgroup2 = errors.New("no cgroup2 mount found")

// Mount2 returns where the cgroup v2 hierarchy is mounted, read from
// /proc/self/mountinfo (it is /sys/fs/cgroup on most nodes, and
// /sys/fs/cgroup/unified on hybrid hosts).
func Mount2() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("open mountinfo: %w", err)
	}
	defer f.Close()
	p, err := parseMountinfo(f, "cgroup2")
	if errors.Is(err, os.ErrNotExist) {
		return "", ErrNoCgroup2
	}
	return p, err
}

// MountOf returns the first mount point of a filesystem type in mountinfo,
// or an error wrapping os.ErrNotExist.
func MountOf(fstype string) (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("open mountinfo: %w", err)
	}
	defer f.Close()
	return parseMountinfo(f, fstype)
}

// parseMountinfo returns the mount point of the first mount of fstype.
// Lines look like:
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
func parseMountinfo(r io.Reader, fstype string) (string, error) {
	s := bufio.NewScanner(r)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		for i := 6; i < len(fields)-1; i++ {
			if fields[i] == "-" {
				if fields[i+1] == fstype && len(fields) > 4 {
					return unescape(fields[4]), nil
				}
				break
			}
		}
	}
	if err := s.Err(); err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	return "", fmt.Errorf("no %s mount: %w", fstype, os.ErrNotExist)
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// DefaultPodRoot returns the kubelet's pod cgroup root under the cgroup2
// mount: kubepods.slice (systemd driver) or kubepods (cgroupfs driver).
func DefaultPodRoot(mount string) (string, error) {
	for _, name := range []string{"kubepods.slice", "kubepods"} {
		p := filepath.Join(mount, name)
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("find pod cgroup root under %s: neither kubepods.slice nor kubepods exists; set --cgroup-root", mount)
}

// maxDepth bounds the search below the pod root: QoS class dirs are at depth
// 1, pod dirs at depth 1 or 2.
const maxDepth = 2

// PodUID returns the pod UID a cgroup directory name stands for, in its
// dashed form, and whether the name is a pod cgroup at all.
func PodUID(dirName string) (string, bool) {
	name := strings.TrimSuffix(dirName, ".slice")
	i := strings.LastIndex(name, "pod")
	if i < 0 {
		return "", false
	}
	uid := strings.ReplaceAll(name[i+3:], "_", "-")
	if !isUID(uid) {
		return "", false
	}
	return uid, true
}

// isUID accepts the 36-character dashed form of a UUID.
func isUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// Pod is a pod cgroup found under the pod root.
type Pod struct {
	Path string
	ID   uint64
}

// ScanPods walks root (at most two levels deep) and returns the pod cgroups
// it finds by pod UID, for both kubelet cgroup drivers.
func ScanPods(root string) (map[string]Pod, error) {
	out := make(map[string]Pod)
	err := scan(root, 0, out)
	if err != nil {
		return nil, err
	}
	return out, nil
}

func scan(dir string, depth int, out map[string]Pod) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if depth > 0 && errors.Is(err, os.ErrNotExist) {
			return nil // removed while we walked
		}
		return fmt.Errorf("scan pod cgroups in %s: %w", dir, err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if uid, ok := PodUID(e.Name()); ok {
			id, err := ID(p)
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue
				}
				return err
			}
			out[uid] = Pod{Path: p, ID: id}
			continue
		}
		if depth+1 < maxDepth {
			if err := scan(p, depth+1, out); err != nil {
				return err
			}
		}
	}
	return nil
}
