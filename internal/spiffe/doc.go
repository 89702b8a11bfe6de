// Package spiffe is the workload identity format shared by the agent (which
// obtains certificates) and the proxy (which presents and verifies them):
// SPIFFE IDs of the form spiffe://<trust-domain>/ns/<namespace>/sa/<sa>, how
// they sit in an X.509 SVID, and the TLS server name that asks a peer node
// for a given identity's certificate.
package spiffe
