// Package e2e holds Skein's end-to-end tests: real agents in the lab
// (scripts/lab), real clients (curl, h2load, grpc-go) in pods, the real
// kernel datapath. Every test is privileged (TestPrivileged*), builds the
// binaries once, runs its own lab under a unique prefix and tears it down
// even when it fails.
package e2e
