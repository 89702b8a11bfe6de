//go:build linux

package kernel

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/skeinmesh/skein/agent/cgroup"
)

// Well-known mount points.
const (
	BPFFSPath   = "/sys/fs/bpf"
	TraceFSPath = "/sys/kernel/tracing"
)

// Mount is a filesystem the agent needs.
type Mount struct {
	Path    string `json:"path"`
	FSType  string `json:"fsType"`
	Mounted bool   `json:"mounted"` // true if the agent mounted it now
}

// EnsureMounts mounts bpffs and tracefs at their usual places unless a
// filesystem of that type is mounted there already. Tracefs is optional: a
// failure to mount it is returned in the list, not as an error.
func EnsureMounts() ([]Mount, error) {
	var out []Mount
	for _, m := range []struct {
		path, fstype string
		magic        int64
		required     bool
	}{
		{BPFFSPath, "bpf", unix.BPF_FS_MAGIC, true},
		{TraceFSPath, "tracefs", unix.TRACEFS_MAGIC, false},
	} {
		mounted, err := ensureMount(m.path, m.fstype, m.magic)
		if err != nil {
			if m.required {
				return out, err
			}
			continue
		}
		out = append(out, Mount{Path: m.path, FSType: m.fstype, Mounted: mounted})
	}
	return out, nil
}

func ensureMount(path, fstype string, magic int64) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err == nil && int64(st.Type) == magic {
		return false, nil
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return false, fmt.Errorf("create %s mount point %s: %w", fstype, path, err)
	}
	if err := unix.Mount(fstype, path, fstype, 0, ""); err != nil {
		return false, fmt.Errorf("mount %s at %s: %w", fstype, path, err)
	}
	return true, nil
}

// Feature is one kernel capability and whether this kernel has it.
type Feature struct {
	Name      string `json:"name"`
	Available bool   `json:"available"`
	// Required features stop the agent when missing; others have fallbacks.
	Required bool   `json:"required"`
	Detail   string `json:"detail,omitempty"`
}

// Probe checks the BPF features Skein uses. It loads tiny programs, so it
// needs the same privileges as the agent.
func Probe() []Feature {
	check := func(name string, required bool, err error) Feature {
		f := Feature{Name: name, Required: required, Available: err == nil}
		if err != nil {
			f.Detail = err.Error()
		}
		return f
	}
	_, cgErr := cgroup.Mount2()
	_, btfErr := os.Stat("/sys/kernel/btf/vmlinux")
	return []Feature{
		check("cgroup v2", true, cgErr),
		check("cgroup/connect4,6 (sock_addr)", true, features.HaveProgramType(ebpf.CGroupSockAddr)),
		check("sockops", true, features.HaveProgramType(ebpf.SockOps)),
		check("sk_storage map", true, features.HaveMapType(ebpf.SkStorage)),
		check("sockmap", true, features.HaveMapType(ebpf.SockMap)),
		check("ring buffer", false, features.HaveMapType(ebpf.RingBuf)),
		check("cgroup_skb (STRICT enforcement)", false, features.HaveProgramType(ebpf.CGroupSKB)),
		check("kernel BTF", false, btfErr),
		check("tp_btf (BTF tracepoints)", false, probeTracing(ebpf.AttachTraceRawTp, "tcp_retransmit_skb")),
		check("fentry", false, probeTracing(ebpf.AttachTraceFEntry, "tcp_connect")),
		check("kprobes", false, probeKprobe()),
		check("tracefs", false, probeTracefs()),
	}
}

// probeTracing loads a no-op BTF tracing program of the given attach type.
func probeTracing(at ebpf.AttachType, target string) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:       ebpf.Tracing,
		AttachType: at,
		AttachTo:   target,
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		return err
	}
	return prog.Close()
}

func probeKprobe() error {
	if err := features.HaveProgramType(ebpf.Kprobe); err != nil {
		return err
	}
	if _, err := os.Stat("/sys/bus/event_source/devices/kprobe/type"); err != nil {
		return errors.New("kernel built without kprobe events")
	}
	return nil
}

func probeTracefs() error {
	var st unix.Statfs_t
	if err := unix.Statfs(TraceFSPath, &st); err != nil {
		return err
	}
	if int64(st.Type) != unix.TRACEFS_MAGIC {
		return fmt.Errorf("%s is not tracefs", TraceFSPath)
	}
	return nil
}

// Missing returns the required features that are not available.
func Missing(fs []Feature) []Feature {
	var out []Feature
	for _, f := range fs {
		if f.Required && !f.Available {
			out = append(out, f)
		}
	}
	return out
}
