// Package identity is workload identity for the mesh: SPIFFE IDs
// (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>), the X.509
// SVIDs that carry them, and the agent's certificate manager, which keeps a
// short-lived certificate for every workload on the node, renewed at
// half-life, with private keys only in memory.
//
// The manager asks a [Signer] for certificates; the agent's Signer talks to
// cmd/skein-ca, and the interface is small so that SPIRE or cert-manager can
// stand in for it.
package identity
