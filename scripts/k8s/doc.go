// Package k8s runs a real Kubernetes API server on this machine for Skein's
// end-to-end tests and for trying the agent against the API: Debian's etcd
// and a kube-apiserver built from the Go module proxy, both bound to
// 127.0.0.1, with RBAC, service account tokens and the Gateway API and
// AuthorizationPolicy CRDs installed. There is no kubelet, scheduler or
// controller-manager: the lab (scripts/lab) plays kubelet and CNI for the
// pods a test creates, and the test writes pod status and EndpointSlices.
//
// The binaries are built once into a cache outside the repository, keyed
// by version (tools.sh, embedded here): kube-apiserver takes minutes on two
// cores, a second run finds it at once.
//
// Up starts a cluster in a directory of its own (certificates, tokens,
// kubeconfigs, etcd data, logs and pid files); Down stops it and removes
// the directory, and works from the directory alone after a crash.
// scripts/k8s/cluster.sh up|down|env is the command-line front end.
package k8s
