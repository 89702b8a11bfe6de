package lab

import (
	"errors"
	"path/filepath"
	"time"
)

// Options configure a lab.
type Options struct {
	// Prefix starts the name of everything the lab creates (netns, cgroups,
	// state and pin directories): 1 to 12 lowercase letters and digits.
	// Empty: "skl". Tests use their own, e.g. "sklt<pid>".
	Prefix string
	// StateDir holds cluster.yaml, topology.yaml, logs and admin sockets.
	// Empty: /run/<prefix>. Teardown(prefix) finds only the default one:
	// use TeardownOptions for a lab with another state directory.
	StateDir string
	// AgentBinary is the skein-agent to run on every node. Empty: Up
	// starts no agents.
	AgentBinary string
	// AgentArgs are extra agent flags for every node.
	AgentArgs []string
	// CABinary is skein-ca; if set, Up starts it on the first node before
	// the agents and points every agent at it (mTLS between nodes).
	CABinary string
	// CAArgs are extra skein-ca serve flags.
	CAArgs []string
	// Logf, if set, receives progress messages.
	Logf func(format string, args ...any)
}

// DefaultExecTimeout bounds Exec and ExecNode when their context has no
// deadline.
const DefaultExecTimeout = 2 * time.Minute

// ErrDown is returned by the methods of a Lab that is down.
var ErrDown = errors.New("lab is down")

// resolve fills in defaults and validates.
func (o Options) resolve() (Options, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if err := checkPrefix(o.Prefix); err != nil {
		return o, err
	}
	if o.StateDir == "" {
		o.StateDir = defaultStateDir(o.Prefix)
	}
	o.StateDir = filepath.Clean(o.StateDir)
	if !filepath.IsAbs(o.StateDir) {
		abs, err := filepath.Abs(o.StateDir)
		if err != nil {
			return o, err
		}
		o.StateDir = abs
	}
	if o.StateDir == "/" {
		return o, errors.New("state dir /: pick a directory of its own")
	}
	if o.CABinary != "" && !filepath.IsAbs(o.CABinary) {
		abs, err := filepath.Abs(o.CABinary)
		if err != nil {
			return o, err
		}
		o.CABinary = abs
	}
	if o.AgentBinary != "" && !filepath.IsAbs(o.AgentBinary) {
		abs, err := filepath.Abs(o.AgentBinary)
		if err != nil {
			return o, err
		}
		o.AgentBinary = abs
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o, nil
}
