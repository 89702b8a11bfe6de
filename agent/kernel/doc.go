// Package kernel prepares and inspects the node's kernel for the agent: it
// mounts bpffs and tracefs when they are missing (as production agents do;
// a fresh node often has neither), and probes which BPF features the
// running kernel offers, so the agent can fall back where a hook is missing
// and say clearly what it could not use.
package kernel
