// Package l7proxy is Skein's shared node proxy. It accepts the connections
// the capture programs steer to the outbound listener, recovers where each
// one was going and who sent it, picks an endpoint and forwards the traffic.
//
// The proxy knows nothing of BPF or of Kubernetes: the agent hands it a
// [Table] (services, endpoints, workloads) built from its model, and an
// [OrigDstResolver] that answers, for an accepted connection, the destination
// the app dialed and the workload that dialed it. Tables are swapped
// atomically; connections in flight keep the table they started with.
package l7proxy
