// Command skein-lab runs the Skein lab: a small Kubernetes cluster made of
// network namespaces and cgroups on one Linux machine (see package
// scripts/lab), and the test backends and clients that lab pods run, so
// that end-to-end tests exercise the mesh with real, standard
// implementations (net/http, grpc-go) rather than ones of our own.
//
//	skein-lab up -f scripts/topologies/demo.yaml [--agent bin/skein-agent | --no-agents]
//	skein-lab status
//	skein-lab exec client -- curl -s http://10.96.0.10/
//	skein-lab down
//
// Backends, which report the pod that answered (SKEIN_LAB_POD):
//
//	skein-lab echo --listen :8080        HTTP/1.1 and h2c JSON echo; /upgrade and /ws echo upgraded connections
//	skein-lab grpc-server --listen :9000 grpc.testing.TestService and grpc.health.v1.Health over h2c
//
// Clients, which print a summary (-o json for tests) and exit 0 whatever the
// outcome of the calls, so that the test judges it:
//
//	skein-lab grpc-client --target 10.96.0.20:9000 --calls 300 [--concurrency 1] [--stream-messages 0]
//	    [--deadline 2s] [--metadata k=v]... [--status-code N] [--timeout 60s] [-o json]
//	skein-lab http-load --url http://10.96.0.10/ --requests 2000 --concurrency 8 [--http2]
//	    [--header Name:value]... [--timeout 60s] [-o json]
//
// and clients that exit non-zero on any failure:
//
//	skein-lab upgrade-client --url http://10.96.0.10/upgrade --message hello [--rounds 1]
//	skein-lab ws-client --url ws://10.96.0.10/ws --message hello [--rounds 1]
package main
