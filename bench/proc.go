package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// The readings below come from Linux's /proc; elsewhere they return the
// error of the missing file.

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// CPUSeconds returns the user plus system CPU time that process pid has
// used so far, all threads included (utime+stime of /proc/<pid>/stat).
func CPUSeconds(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	return parseStatCPU(data)
}

// parseStatCPU reads fields 14 (utime) and 15 (stime) of a stat line. The
// command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseStatCPU(data []byte) (float64, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("parse stat: no command name")
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state): utime is field 14, f[11].
	if len(f) < 13 {
		return 0, errors.New("parse stat: too few fields")
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parse stat: %w", err)
	}
	return float64(utime+stime) / clockTicks, nil
}

// MemInfo is a process's memory, in bytes, from /proc/<pid>/status.
type MemInfo struct {
	RSS  int64 // VmRSS: resident now
	Peak int64 // VmHWM: the most resident since start or ResetPeak
	// Anon is RssAnon: the resident part that is the process's own
	// (heap, stacks), without the pages of its executable and other files,
	// which the page cache shares and can reclaim.
	Anon int64
}

// Memory reads a process's memory figures.
func Memory(pid int) (MemInfo, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return MemInfo{}, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	return parseStatusMemory(data)
}

func parseStatusMemory(data []byte) (MemInfo, error) {
	var m MemInfo
	fields := map[string]*int64{"VmRSS": &m.RSS, "VmHWM": &m.Peak, "RssAnon": &m.Anon}
	for line := range strings.Lines(string(data)) {
		name, val, ok := strings.Cut(line, ":")
		dst := fields[name]
		if !ok || dst == nil {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return MemInfo{}, fmt.Errorf("parse status: %s: %q", name, val)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return MemInfo{}, fmt.Errorf("parse status: %s: %w", name, err)
		}
		*dst = kb << 10
	}
	if m.RSS == 0 || m.Peak == 0 {
		return MemInfo{}, errors.New("parse status: no VmRSS or VmHWM (kernel thread?)")
	}
	return m, nil
}

// ResetPeak resets a process's peak RSS (VmHWM) to its current RSS, so that
// a later reading is the peak of what happened in between (needs the right
// to write /proc/<pid>/clear_refs: root or the owner).
func ResetPeak(pid int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak RSS of pid %d: %w", pid, err)
	}
	return nil
}

// Children returns the pids of a process's children (all threads).
func Children(pid int) []int {
	var out []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		for _, f := range strings.Fields(string(data)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// ProcSample is the CPU time and memory of a set of processes at one moment.
type ProcSample struct {
	CPU  float64 // seconds, summed over the processes
	RSS  int64   // bytes, summed
	Peak int64   // bytes, sum of each process's VmHWM
	Anon int64   // bytes, sum of RssAnon
}

// SampleProcs reads CPU and memory of every pid and sums them.
func SampleProcs(pids []int) (ProcSample, error) {
	var s ProcSample
	for _, pid := range pids {
		cpu, err := CPUSeconds(pid)
		if err != nil {
			return s, err
		}
		m, err := Memory(pid)
		if err != nil {
			return s, err
		}
		s.CPU += cpu
		s.RSS += m.RSS
		s.Peak += m.Peak
		s.Anon += m.Anon
	}
	return s, nil
}

// SchedTimes returns how long all threads of process pid have run on a CPU
// and how long they have waited in a run queue for one, from
// /proc/<pid>/task/*/schedstat (needs schedstats, on in every distribution
// kernel). Threads that have exited are not counted.
func SchedTimes(pid int) (run, wait time.Duration, err error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("list threads of pid %d: %w", pid, err)
	}
	for _, t := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // the thread exited
		}
		r, w, err := parseSchedstat(data)
		if err != nil {
			return 0, 0, err
		}
		run += r
		wait += w
	}
	return run, wait, nil
}

// parseSchedstat reads "<run ns> <wait ns> <timeslices>".
func parseSchedstat(data []byte) (run, wait time.Duration, err error) {
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("parse schedstat: %q", data)
	}
	r, err1 := strconv.ParseInt(f[0], 10, 64)
	w, err2 := strconv.ParseInt(f[1], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("parse schedstat: %w", err)
	}
	return time.Duration(r), time.Duration(w), nil
}

// CPUBusy returns how long CPU cpu has been busy (everything but idle and
// iowait) since boot, from /proc/stat.
func CPUBusy(cpu int) (time.Duration, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseCPUBusy(data, cpu)
}

func parseCPUBusy(data []byte, cpu int) (time.Duration, error) {
	name := "cpu" + strconv.Itoa(cpu)
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) < 9 || f[0] != name {
			continue
		}
		var busy int64
		for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse /proc/stat %s: %w", name, err)
			}
			if i != 3 && i != 4 {
				busy += n
			}
		}
		return time.Duration(busy) * time.Second / clockTicks, nil
	}
	return 0, fmt.Errorf("parse /proc/stat: no %s", name)
}
