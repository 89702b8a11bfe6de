#!/usr/bin/env bash
# jaeger.sh builds Jaeger (the all-in-one v2 binary, github.com/jaegertracing/jaeger/cmd/jaeger) from
# the Go module proxy into a cache outside the repository, keyed by version, and prints its path:
#
#   scripts/jaeger.sh            # ~9 min on 2 cores the first time, then at once
#   JAEGER_VERSION=v1.76.0 scripts/jaeger.sh
#
# Jaeger is not a dependency of the skein module: it is built in a throwaway module under the cache
# (go get -tool, then go build), so go.mod stays free of it. A concurrent call waits on a lock instead
# of building twice; an interrupted build leaves no binary behind (it is renamed into place at the end).
# The e2e tracing test (e2e/tracing_test.go) calls this script; it runs Jaeger in a lab node's network
# namespace with an OpenTelemetry-collector-style --config (OTLP in, memory storage, query API).
set -euo pipefail

JAEGER_VERSION=${JAEGER_VERSION:-v1.76.0}
CACHE=${SKEIN_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/skein}
GO=${GO:-go}
PKG=github.com/jaegertracing/jaeger/cmd/jaeger

die() { echo "jaeger.sh: $*" >&2; exit 1; }

dir=$CACHE/jaeger-$JAEGER_VERSION
bin=$dir/jaeger
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
if [[ -x $bin ]]; then
	echo "$bin"
	exit 0
fi

mod=$dir/module
rm -rf "$mod"
mkdir -p "$mod"
(
	cd "$mod"
	export GOFLAGS=-mod=mod GOWORK=off
	"$GO" mod init skein.local/tools/jaeger >/dev/null 2>&1
	start=$(date +%s)
	"$GO" get -tool "$PKG@$JAEGER_VERSION" >&2
	CGO_ENABLED=0 "$GO" build -trimpath -ldflags=-s -o "$bin.tmp" "$PKG" >&2
	mv "$bin.tmp" "$bin"
	echo "jaeger.sh: built jaeger $JAEGER_VERSION in $(($(date +%s) - start))s" >&2
) || { rm -f "$bin.tmp"; die "build jaeger $JAEGER_VERSION failed"; }
rm -rf "$mod"
echo "$bin"
