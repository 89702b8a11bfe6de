#!/usr/bin/env bash
# tools.sh builds the programs the Kubernetes test cluster needs from the Go module proxy into a
# cache outside the repository, keyed by version, and prints the path of the binary:
#
#   scripts/k8s/tools.sh kube-apiserver   # k8s.io/kubernetes/cmd/kube-apiserver (~10 min on 2 cores)
#   scripts/k8s/tools.sh helm             # helm.sh/helm/v3/cmd/helm (~2 min)
#
# Neither is a dependency of the skein module: each is built in a throwaway module under the cache,
# so go.mod stays free of k8s.io/kubernetes and helm. A second call finds the binary and returns at once.
# A concurrent call waits on a lock instead of building twice.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
STAGING_VERSION=${STAGING_VERSION:-v0.${KUBE_VERSION#v1.}}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
CACHE=${SKEIN_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/skein}
GO=${GO:-go}

die() { echo "tools.sh: $*" >&2; exit 1; }

# build NAME VERSION MODULE@VERSION PACKAGE LDFLAGS [REPLACES...]: builds PACKAGE in a throwaway
# module into $CACHE/NAME-VERSION/NAME unless it is there already.
build() {
	local name=$1 version=$2 require=$3 pkg=$4 ldflags=$5
	shift 5
	local dir=$CACHE/$name-$version
	local bin=$dir/$name
	mkdir -p "$dir"
	exec 9>"$dir/.lock"
	flock 9
	if [[ -x $bin ]]; then
		echo "$bin"
		return
	fi
	local mod=$dir/module
	rm -rf "$mod"
	mkdir -p "$mod"
	(
		cd "$mod"
		export GOFLAGS=-mod=mod GOWORK=off
		"$GO" mod init "skein.local/tools/$name" >/dev/null 2>&1
		for r in "$@"; do
			"$GO" mod edit -replace "$r"
		done
		"$GO" mod edit -require "$require"
		printf 'package tools\n\nimport _ "%s"\n' "$pkg" >tools.go
		"$GO" mod tidy >&2
		# @CLIENT_GO_MINOR@ in LDFLAGS stands for the minor version of the client-go the program
		# was built with (helm's default Kubernetes version for templates and lint).
		local cg
		cg=$("$GO" list -m -f '{{.Version}}' k8s.io/client-go 2>/dev/null || echo v0.0.0)
		cg=${cg#v0.}
		ldflags=${ldflags//@CLIENT_GO_MINOR@/${cg%%.*}}
		start=$(date +%s)
		CGO_ENABLED=0 "$GO" build -trimpath -ldflags="-s $ldflags" -o "$bin.tmp" "$pkg" >&2
		mv "$bin.tmp" "$bin"
		echo "tools.sh: built $name $version in $(($(date +%s) - start))s" >&2
	) || die "build $name $version failed"
	rm -rf "$mod"
	echo "$bin"
}

kube_apiserver() {
	local gomod
	gomod=$("$GO" mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
	[[ -f $gomod ]] || die "download k8s.io/kubernetes@$KUBE_VERSION go.mod"
	# The kubernetes module replaces its staging modules (k8s.io/api, k8s.io/apimachinery, ...) with
	# directories in its own tree; outside that tree each resolves to the published module of the
	# matching minor version.
	local replaces=()
	while read -r m; do
		replaces+=("$m=$m@$STAGING_VERSION")
	done < <(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod")
	[[ ${#replaces[@]} -gt 0 ]] || die "no staging modules in $gomod"
	# Stamp the version the way the Kubernetes build does, so /version (kubectl, helm) reports it.
	local v=k8s.io/component-base/version minor=${KUBE_VERSION#v1.}
	minor=${minor%%.*}
	local ldflags="-X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
	build kube-apiserver "$KUBE_VERSION" "k8s.io/kubernetes@$KUBE_VERSION" k8s.io/kubernetes/cmd/kube-apiserver "$ldflags" "${replaces[@]}"
}

helm() {
	# As helm's Makefile does: the version, and the Kubernetes version that `helm template` and
	# `helm lint` assume, from the client-go helm is built with.
	local h=helm.sh/helm/v3 ldflags
	ldflags="-X $h/internal/version.version=$HELM_VERSION -X $h/internal/version.gitTreeState=clean"
	for p in pkg/lint/rules pkg/chartutil; do
		ldflags+=" -X $h/$p.k8sVersionMajor=1 -X $h/$p.k8sVersionMinor=@CLIENT_GO_MINOR@"
	done
	build helm "$HELM_VERSION" "helm.sh/helm/v3@$HELM_VERSION" helm.sh/helm/v3/cmd/helm "$ldflags"
}

case ${1:-} in
kube-apiserver) kube_apiserver ;;
helm) helm ;;
*) die "usage: $0 kube-apiserver|helm" ;;
esac
