// Package cgroup finds the cgroup v2 hierarchy and the cgroups of pods in it.
//
// The capture programs attach to the node's pod cgroup root and identify
// pods by cgroup id (the cgroup directory's inode number on cgroup2), so the
// agent must map a Pod's UID to its cgroup directory. The kubelet lays pod
// cgroups out in one of two ways, depending on its cgroup driver:
//
//	cgroupfs: kubepods/pod<uid>, kubepods/burstable/pod<uid>, kubepods/besteffort/pod<uid>
//	systemd:  kubepods.slice/kubepods-pod<uid_>.slice,
//	          kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice, ...
//
// where uid_ is the UID with dashes turned into underscores. Container runtimes
// may nest further (containers below the pod cgroup); those are found by the
// BPF side walking ancestors, so only pod-level directories matter here.
package cgroup
