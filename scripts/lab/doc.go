// Package lab plays a small Kubernetes cluster on one Linux machine, for
// `make demo`, the end-to-end tests and the benchmarks.
//
// A topology file names nodes, namespaces, pods and Services. Up gives
// every node and every pod a network namespace, joins each pod to its node
// with a veth pair and the nodes to each other over an underlay bridge (in
// a namespace of its own), puts every pod in a cgroup v2 laid out like the
// kubelet's cgroupfs driver (<prefix>-<node>/kubepods/besteffort/pod<uid>),
// writes the Kubernetes objects (Nodes, Namespaces, ServiceAccounts, Pods,
// Services, EndpointSlices, plus any extra objects) to cluster.yaml, and
// starts one skein-agent per node in that node's namespace. So the agent
// runs unchanged: it reads the same objects from a file that it would read
// from the API server, and finds pods by cgroup as on a real node.
//
// Addressing: node i (1-based) has underlay address 192.168.77.i and pod
// CIDR 10.244.i.0/24; its pods get 10.244.i.10, .11, ...; 10.244.i.1 is the
// pods' gateway and the node proxy's address. Services get cluster IPs in
// 10.96.0.0/16, which no namespace routes: a connect to a VIP that the mesh
// did not capture fails inside the lab. No lab namespace has a route out,
// and the lab never adds a link, address or route to the root namespace.
//
// Everything the lab creates is named from a prefix (default "skl"):
// namespaces <prefix>-<node>, <prefix>-<node>-<pod> and <prefix>-underlay,
// cgroups <cgroup2>/<prefix>-<node>, state in /run/<prefix>, BPF pins in
// /sys/fs/bpf/<prefix>. Teardown removes all of it by prefix, so it works
// after a crash and any number of times.
//
// Processes run in a pod join its cgroup first (Go clones them straight
// into it) and then its network namespace (nsenter), never the other way:
// a process must never run in a pod's netns outside the pod's cgroup, where
// the mesh would misattribute or miss its connections.
package lab
