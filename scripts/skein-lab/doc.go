// Command skein-lab runs the Skein lab: a small Kubernetes cluster made of
// network namespaces and cgroups on one Linux machine (see package
// scripts/lab), and "echo", the HTTP/1.1 and h2c test backend that lab pods
// run.
//
//	skein-lab up -f scripts/topologies/demo.yaml [--agent bin/skein-agent | --no-agents]
//	skein-lab status
//	skein-lab exec client -- curl -s http://10.96.0.10/
//	skein-lab down
//	skein-lab echo --listen :8080
package main
