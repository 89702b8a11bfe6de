package cgroup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseMountinfo(t *testing.T) {
	const hybrid = `25 1 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw
27 25 0:25 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
40 21 0:35 / /sys/fs/bpf rw,relatime - bpf bpf rw
41 21 0:36 / /mnt/with\040space rw - tracefs tracefs rw
`
	tests := []struct {
		name, fstype, want string
		wantErr            bool
	}{
		{"cgroup2 on a hybrid host", "cgroup2", "/sys/fs/cgroup/unified", false},
		{"bpffs", "bpf", "/sys/fs/bpf", false},
		{"escaped mount point", "tracefs", "/mnt/with space", false},
		{"missing fs", "debugfs", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMountinfo(strings.NewReader(hybrid), tt.fstype)
			if tt.wantErr {
				require.ErrorIs(t, err, os.ErrNotExist)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestPodUID(t *testing.T) {
	const uid = "0f6b5a4e-3c2d-4b1a-9e8f-7a6b5c4d3e2f"
	tests := []struct {
		dir  string
		want string
		ok   bool
	}{
		{"pod" + uid, uid, true},
		{"kubepods-burstable-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice", uid, true},
		{"kubepods-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice", uid, true},
		{"burstable", "", false},
		{"kubepods-besteffort.slice", "", false},
		{"podnot-a-uid", "", false},
		{"cri-containerd-" + uid + ".scope", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			got, ok := PodUID(tt.dir)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.want, got)
		})
	}
}

// mkTree creates directories under root.
func mkTree(t *testing.T, root string, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		require.NoError(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
}

func TestScanPods(t *testing.T) {
	const (
		a = "11111111-2222-3333-4444-555555555555"
		b = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
		c = "01234567-89ab-cdef-0123-456789abcdef"
	)
	us := func(s string) string { return strings.ReplaceAll(s, "-", "_") }
	tests := []struct {
		name  string
		dirs  []string
		want  map[string]string // uid -> path relative to root
		root  string
		found bool
	}{
		{
			name: "cgroupfs driver",
			root: "kubepods",
			dirs: []string{
				"kubepods/pod" + a + "/ctr1",
				"kubepods/burstable/pod" + b,
				"kubepods/besteffort/pod" + c + "/ctr2/nested",
			},
			want: map[string]string{a: "pod" + a, b: "burstable/pod" + b, c: "besteffort/pod" + c},
		},
		{
			name: "systemd driver",
			root: "kubepods.slice",
			dirs: []string{
				"kubepods.slice/kubepods-pod" + us(a) + ".slice/cri-containerd-x.scope",
				"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + us(b) + ".slice",
				"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + us(c) + ".slice",
			},
			want: map[string]string{
				a: "kubepods-pod" + us(a) + ".slice",
				b: "kubepods-burstable.slice/kubepods-burstable-pod" + us(b) + ".slice",
				c: "kubepods-besteffort.slice/kubepods-besteffort-pod" + us(c) + ".slice",
			},
		},
		{
			name: "too deep is not a pod cgroup",
			root: "kubepods",
			dirs: []string{"kubepods/a/b/pod" + a},
			want: map[string]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mount := t.TempDir()
			mkTree(t, mount, tt.dirs...)
			root, err := DefaultPodRoot(mount)
			require.NoError(t, err)
			require.Equal(t, filepath.Join(mount, tt.root), root)
			pods, err := ScanPods(root)
			require.NoError(t, err)
			require.Len(t, pods, len(tt.want))
			for uid, rel := range tt.want {
				p, ok := pods[uid]
				require.True(t, ok, "pod %s not found", uid)
				require.Equal(t, filepath.Join(root, rel), p.Path)
				id, err := ID(p.Path)
				require.NoError(t, err)
				require.Equal(t, id, p.ID)
				require.NotZero(t, p.ID)
			}
		})
	}
}

func TestDefaultPodRootMissing(t *testing.T) {
	_, err := DefaultPodRoot(t.TempDir())
	require.ErrorContains(t, err, "--cgroup-root")
}

func TestScanPodsMissingRoot(t *testing.T) {
	_, err := ScanPods(filepath.Join(t.TempDir(), "nope"))
	require.ErrorIs(t, err, os.ErrNotExist)
}
