// Package capture loads, attaches and feeds Skein's outbound capture programs.
//
// The programs (capture.c) rewrite the connects of meshed pods to mesh
// destinations so that they reach the node proxy's outbound listener, and
// record, per connection, the destination the app dialed and the pod cgroup of
// the socket. The proxy gets both back from an accepted connection with
// [Datapath.Lookup].
//
// # Pin policy
//
// With a pin path (the agent uses /sys/fs/bpf/skein/<node>/capture), maps are
// pinned under maps/ and links under links/:
//
//   - links/<program>: the cgroup links. Pinned so that capture survives an
//     agent restart or upgrade: a new agent loads its programs and swaps them
//     into the pinned links atomically (link update), so there is never a
//     moment without capture and never a duplicate attachment.
//   - maps/capture_cfg, members, excluded_ports, mesh_dsts: the policy the
//     agent computed; a restarting agent starts from it and reconciles.
//   - maps/proxy_listener: the liveness entry. It holds the listening socket
//     itself, so it disappears the instant the proxy's socket closes, even on
//     kill -9; connects then fail open or closed as configured.
//   - maps/sock_origin, orig_dst: per-connection state that connections opened
//     before a restart still need (getpeername, accept after handoff).
//   - maps/verdicts: counters keep counting across restarts.
//
// The trace ring buffer is not pinned: it has no state worth keeping.
// [Cleanup] removes the whole tree, which detaches the programs.
package capture
