#!/usr/bin/env bash
# cluster.sh up|down|env: a real Kubernetes API server on 127.0.0.1, without kubelets, for
# trying Skein against the API. `up` builds kube-apiserver v1.37.2 from the Go module proxy once
# (cached under ${XDG_CACHE_HOME:-~/.cache}/skein; minutes on 2 cores), runs Debian's etcd and
# kube-apiserver in the background, installs the Gateway API (standard channel) and
# AuthorizationPolicy CRDs and prints `export KUBECONFIG=...`; `down` stops everything.
#   eval "$(scripts/k8s/cluster.sh up)"; kubectl get crds; scripts/k8s/cluster.sh down
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v etcd >/dev/null || scripts/deps.sh
cache=${SKEIN_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/skein}
mkdir -p "$cache"
go build -o "$cache/skein-k8s" ./scripts/k8s/skein-k8s
exec "$cache/skein-k8s" "$@"
