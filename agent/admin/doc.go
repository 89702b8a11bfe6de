// Package admin is the agent's admin API: JSON over HTTP on a unix socket
// (/run/skein/admin.sock, root only, mode 0600), versioned under /v1/. It is
// read-only except for explicit debug actions. agentctl is its client; the
// types here are the contract between the two.
package admin
