// Package tunnel is the node-to-node mTLS tunnel on port 15008.
//
// A proxy reaches a pod on another node through that node's proxy: TLS 1.3
// with both sides presenting workload certificates (X.509 SVIDs), HTTP/2
// multiplexed. The client presents the source workload's certificate and
// sends, as the TLS server name, the hash of the destination workload's
// identity (spiffe.ID.SNI); the server presents that workload's certificate.
// Either side verifies the other's chain against the trust bundle and reads
// the peer's SPIFFE ID from it, so both workloads are authenticated in-band,
// on every connection. One connection carries every stream between a source
// identity and a destination identity on a node.
//
// Two kinds of streams travel in it:
//   - HTTP requests, as HTTP/2 requests of their own, with the pod address in
//     the Skein-Target header and the protocol to speak to the pod in
//     Skein-Protocol; the receiving proxy authorizes and forwards them.
//   - Opaque TCP (and HTTP/1.1 upgrades), as CONNECT streams whose authority
//     is the pod address.
package tunnel
