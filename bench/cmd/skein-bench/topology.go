package main

// benchTopology is the lab of the benchmarks. Two nodes; an enrolled
// namespace "bench" for everything Skein carries and an unenrolled one,
// "plain", whose pods reach the backends directly or through nginx,
// HAProxy or the Go proxy. Backends and clients are pinned to CPU 0 (the
// harness pins proxies to CPU 1), so that what differs between topologies
// is the proxy.
const benchTopology = `
nodes: [{name: node-a}, {name: node-b}]
namespaces:
  - {name: bench, labels: {skein.io/mesh: enabled}}
  - {name: plain}
pods:
  - {name: client, namespace: bench, node: node-a, serviceAccount: client, labels: {app: client}, command: [sleep, infinity]}
  - {name: raw, namespace: plain, node: node-a, labels: {app: raw}, command: [sleep, infinity]}
  - {name: srv-a, namespace: bench, node: node-a, serviceAccount: srv, labels: {app: srv-a}, ports: [{name: http, containerPort: 8080}],
     command: [taskset, -c, "0", skein-bench, serve, --listen, ":8080", --size, "1024"]}
  - {name: grpc-a, namespace: bench, node: node-a, serviceAccount: srv, labels: {app: grpc-a}, ports: [{name: grpc, containerPort: 9000}],
     command: [taskset, -c, "0", skein-lab, grpc-server, --listen, ":9000"]}
  - {name: alt-a, namespace: bench, node: node-a, serviceAccount: srv, labels: {app: alt-a}, ports: [{name: http, containerPort: 8080}],
     command: [taskset, -c, "0", skein-bench, serve, --listen, ":8080", --size, "64"]}
  - {name: cap-none, namespace: plain, node: node-a, command: [sleep, infinity]}
  - {name: cap-ebpf, namespace: plain, node: node-a, command: [sleep, infinity]}
  - {name: cap-flow, namespace: plain, node: node-a, command: [sleep, infinity]}
  - {name: cap-ipt, namespace: plain, node: node-a, command: [sleep, infinity]}
  - {name: srv-b, namespace: bench, node: node-b, serviceAccount: srv, labels: {app: srv-b}, ports: [{name: http, containerPort: 8080}],
     command: [taskset, -c, "0", skein-bench, serve, --listen, ":8080", --size, "1024"]}
  - {name: grpc-b, namespace: bench, node: node-b, serviceAccount: srv, labels: {app: grpc-b}, ports: [{name: grpc, containerPort: 9000}],
     command: [taskset, -c, "0", skein-lab, grpc-server, --listen, ":9000"]}
services:
  - {name: local, namespace: bench, clusterIP: 10.96.1.10, selector: {app: srv-a}, ports: [{name: http, port: 80, targetPort: 8080}]}
  - {name: remote, namespace: bench, clusterIP: 10.96.1.11, selector: {app: srv-b}, ports: [{name: http, port: 80, targetPort: 8080}]}
  - {name: grpc-local, namespace: bench, clusterIP: 10.96.1.12, selector: {app: grpc-a}, ports: [{name: grpc, port: 9000, targetPort: 9000, appProtocol: grpc}]}
  - {name: grpc-remote, namespace: bench, clusterIP: 10.96.1.13, selector: {app: grpc-b}, ports: [{name: grpc, port: 9000, targetPort: 9000, appProtocol: grpc}]}
  - {name: probe, namespace: bench, clusterIP: 10.96.1.14, selector: {app: srv-a}, ports: [{name: http, port: 80, targetPort: 8080}]}
  - {name: alt, namespace: bench, clusterIP: 10.96.1.15, selector: {app: alt-a}, ports: [{name: http, port: 80, targetPort: 8080}]}
`

// Addresses the harness uses (see benchTopology and the lab's addressing).
const (
	gatewayA   = "10.244.1.1"   // node-a's address for its pods: where its proxies listen
	nodeBIP    = "192.168.77.2" // node-b on the underlay: where its TLS hops listen
	vipLocal   = "10.96.1.10"
	vipRemote  = "10.96.1.11"
	vipGRPCLoc = "10.96.1.12"
	vipGRPCRem = "10.96.1.13"
	vipProbe   = "10.96.1.14"
	captureVIP = "10.96.9.9" // no Service: only the capture benchmark's own rules know it
)

// probeRoute points the probe Service's traffic at backend (local or alt).
func probeRoute(backend string) string {
	return `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: probe, namespace: bench}
spec:
  parentRefs: [{group: "", kind: Service, name: probe, port: 80}]
  rules:
  - backendRefs: [{name: ` + backend + `, port: 80}]
`
}
