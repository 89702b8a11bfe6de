//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "skein-k8s: runs on Linux only (etcd, kube-apiserver and network namespaces)")
	os.Exit(1)
}
