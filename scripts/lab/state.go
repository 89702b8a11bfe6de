package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"
)

// Files in the state directory.
const (
	clusterFile  = "cluster.yaml"
	topologyFile = "topology.yaml"
	markerFile   = ".skein-lab"
	podLogDir    = "pods"
	agentLogFile = "agent.log"
	agentPidFile = "agent.pid"
	adminSocket  = "admin.sock"
)

const stateHeader = "# skein-lab state: the parsed topology with the addresses, names and UIDs\n" +
	"# the lab allocated. Written by skein-lab; `skein-lab exec`, `status` and\n" +
	"# `down` read it. Do not edit.\n"

// save writes topology.yaml atomically.
func (s *state) save() error {
	data, err := yaml.Marshal(s)
	if err != nil {
		return fmt.Errorf("marshal lab state: %w", err)
	}
	return writeFileAtomic(filepath.Join(s.StateDir, topologyFile), append([]byte(stateHeader), data...), 0o644)
}

// writeCluster writes cluster.yaml atomically: a watching agent sees the
// old file or the new one, never half of one.
func (s *state) writeCluster() error {
	data, err := s.clusterYAML()
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.StateDir, clusterFile), data, 0o644)
}

// loadState reads topology.yaml from a state directory.
func loadState(dir string) (*state, error) {
	data, err := os.ReadFile(filepath.Join(dir, topologyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no lab in %s (no %s): run skein-lab up first: %w", dir, topologyFile, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read lab state: %w", err)
	}
	var s state
	if err := yaml.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("parse lab state %s: %w", filepath.Join(dir, topologyFile), err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("lab state %s: version %d, this skein-lab reads version %d: run skein-lab down and up again",
			filepath.Join(dir, topologyFile), s.Version, stateVersion)
	}
	return &s, nil
}

// writeFileAtomic writes a file through a temporary file in the same
// directory and a rename. The temporary name does not end in .yaml, so a
// reader of *.yaml never picks it up.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir, base := filepath.Split(path)
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = f.Chmod(perm)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
