// Package trace owns the kernel event stream behind `agentctl trace`: one
// ring buffer that every Skein BPF object writes to, the filter the agent
// sets so that uninteresting events never leave the kernel, and the count of
// events lost to a full ring (never silent).
package trace
