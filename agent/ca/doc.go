// Package ca is Skein's certificate authority for workload identities, run
// as cmd/skein-ca. It signs X.509 SVIDs (ECDSA P-256, one URI SAN: the SPIFFE
// ID) for node agents, and only for workloads that run on the requesting
// agent's node: the agent is authenticated (a ServiceAccount token checked
// with a TokenReview in Kubernetes; a per-node bootstrap token in standalone
// mode and in the lab), and the workload's presence on that node is checked
// against the cluster's objects. The root key never leaves the CA.
//
// Signing sits behind [Signer] so SPIRE or cert-manager can replace the
// local CA. The trust bundle may hold several roots: [LocalCA.Rotate] makes a
// new root the signer while the old one stays trusted until it is retired,
// so certificates of both verify during the overlap.
package ca
