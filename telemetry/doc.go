// Package telemetry exposes what the node sees: the Prometheus exporter on
// :15020 (/metrics, /healthz, /readyz) and the collectors behind it, one per
// metric family, each computing its values at scrape time.
//
// The package never imports the agent: the agent hands each collector the
// handles it reads (BPF maps, proxy counters) through small interfaces.
//
// # TCP families (skein_tcp_*)
//
// The TCP families come from the kernel's flow programs (bpf/flow): a
// sockops program follows every TCP socket of the node's meshed pods and
// aggregates per pod, peer and direction; the agent resolves those keys to
// Istio's label set at scrape time (TCPSource). One label set is a pair of
// workloads as one side saw it:
//
//   - reporter="source": connects the node's pods made, labelled with the
//     destination the app dialed (a Service, or a pod of any node), not the
//     node proxy that capture redirected the connect to;
//   - reporter="destination": connections the node's pods accepted. One
//     that came from the node proxy (from another node through the mTLS
//     tunnel, or from a pod of this node) has source_workload="unknown": the
//     kernel sees the proxy's socket, not the client behind it.
//
// What feeds each family:
//
//   - skein_tcp_connections_opened_total: the kernel, when a followed socket
//     is established (sockops ACTIVE_ESTABLISHED or PASSIVE_ESTABLISHED). A
//     captured connect is established with the node proxy, so it counts as
//     opened even when the proxy then fails to reach the destination.
//   - skein_tcp_connections_closed_total: the kernel, when an established
//     socket reaches TCP_CLOSE (state callback), however it ended.
//   - skein_tcp_connections_failed_total: the kernel, when a pod's connect
//     reaches TCP_CLOSE without being established (refused, reset, timed
//     out); and the node proxy, for a captured connect whose upstream
//     connect failed: a TCP connection the proxy closed with flag UF or UT
//     (only set when connecting failed), or an HTTP request answered with UF
//     (the pool had no connection and dialing one failed), counted once, at
//     the source's node (reporter="source"), with the labels the kernel's
//     figures of the same connect get. The two never count the same failure:
//     the kernel does not follow the proxy's sockets, and a captured connect
//     is established with the proxy.
//   - skein_tcp_sent_bytes_total, skein_tcp_received_bytes_total: the
//     kernel's payload counts of the pod's socket (acknowledged bytes sent,
//     in-order bytes received), SYN and FIN left out, brought up to date at
//     scrape time for open flows. As in Istio, sent is what the destination
//     sent to the source (responses) and received what it received
//     (requests), whichever side reports.
//   - skein_tcp_retransmits_total: the kernel's retransmitted segments of
//     the reporter's socket, SYNs included.
//   - skein_tcp_resets_total: RST segments of followed sockets, from the
//     tcp_send_reset and tcp_receive_reset tracepoints; direction="sent" when
//     the reporter's pod sent it, "received" when it came from the peer. A
//     refused connect counts one received reset as well as one failure.
//   - skein_tcp_rtt_seconds: the socket's smoothed RTT (srtt), sampled at
//     the handshake and then at most once a second per flow while it
//     acknowledges data; log2 buckets from 1us to 4.19s.
//   - skein_tcp_connect_duration_seconds: the time from a pod's connect (SYN
//     sent) to established; reporter="source" only, as the side that accepts
//     never connects.
//
// connection_security_policy on these families:
//
//   - reporter="source": "mutual_tls" when capture steered the connect into
//     the node proxy and the proxy reaches every backend of the destination
//     through the mTLS tunnel (meshed, on another node, with a CA); "none"
//     when the connect was not captured (unmeshed destination, excluded
//     port), no backend is reached through the tunnel (same node, no CA), or
//     the Service has none; "unknown" when a Service has backends both on
//     this node and elsewhere, since the proxy picks per connection.
//   - reporter="destination": "mutual_tls" when the connection came from this
//     node's proxy and the agent has a CA: the traffic reached the pod
//     through the mesh, over mTLS from other nodes, or from a pod of this
//     node with the identity the kernel attests (it never left the node; the
//     proxy's socket looks the same in both cases). "none" for everything
//     else: a pod or a client outside the mesh connecting directly (PERMISSIVE
//     mode), or another node's proxy without a CA. Probes the kubelet sends
//     from the node's own address look like the proxy's connections.
//
// Counters never go down while the node runs: the kernel's maps are pinned
// across agent restarts, and the agent keeps per label set what keys it
// pruned, or that moved to another label set, had counted (a carry, saved
// next to the admin socket so a restarted agent continues it). A label set
// with no key left is exported for an hour after, then ends.
package telemetry
