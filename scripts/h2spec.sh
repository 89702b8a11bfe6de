#!/usr/bin/env bash
# h2spec.sh builds h2spec (github.com/summerwind/h2spec, the HTTP/2 conformance suite) from the Go
# module proxy into a cache outside the repository, keyed by version, and prints its path:
#
#   scripts/h2spec.sh            # about a minute on 2 cores the first time, then at once
#   H2SPEC_VERSION=v2.2.1+incompatible scripts/h2spec.sh
#
# h2spec has no go.mod, so it is built in a throwaway module that pins its dependencies (the
# versions below are the ones the skein module uses where it uses them too); go.mod stays free of
# it. A concurrent call waits on a lock; an interrupted build leaves no binary behind. The
# conformance test in l7proxy (TestH2Spec) calls this script.
set -euo pipefail

H2SPEC_VERSION=${H2SPEC_VERSION:-v2.2.1+incompatible}
CACHE=${SKEIN_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/skein}
GO=${GO:-go}
PKG=github.com/summerwind/h2spec/cmd/h2spec

die() { echo "h2spec.sh: $*" >&2; exit 1; }

dir=$CACHE/h2spec-$H2SPEC_VERSION
bin=$dir/h2spec
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
	"$GO" mod init skein.local/tools/h2spec >/dev/null 2>&1
	start=$(date +%s)
	"$GO" get "github.com/summerwind/h2spec@$H2SPEC_VERSION" golang.org/x/net@v0.62.0 \
		github.com/spf13/cobra@v1.10.2 github.com/fatih/color@v1.19.0 >&2
	CGO_ENABLED=0 "$GO" build -trimpath -ldflags=-s -o "$bin.tmp" "$PKG" >&2
	mv "$bin.tmp" "$bin"
	echo "h2spec.sh: built h2spec $H2SPEC_VERSION in $(($(date +%s) - start))s" >&2
) || { rm -f "$bin.tmp"; die "build h2spec $H2SPEC_VERSION failed"; }
rm -rf "$mod"
echo "$bin"
