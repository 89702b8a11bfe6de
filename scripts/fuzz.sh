#!/usr/bin/env bash
# fuzz.sh runs every go test fuzz target of the module (each func Fuzz*(f *testing.F) in a tracked
# _test.go file), one after the other, for FUZZTIME each, and prints each target's executions:
#
#   scripts/fuzz.sh                  # 3m each (make fuzz)
#   FUZZTIME=8s scripts/fuzz.sh      # what make test runs
#   FUZZTIME=5m FUZZ=FuzzSniff scripts/fuzz.sh   # one target (a regular expression on the name)
#
# A failing input is written by go test to the package's testdata/fuzz/<Target>/: commit it with the
# fix, so that plain go test replays it forever. The script fails if any target failed.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-3m}
FUZZ=${FUZZ:-.}
GO=${GO:-go}

status=0
targets=$(
	git grep -E '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' -- '*_test.go' |
	sed -E 's/^([^:]*):func (Fuzz[A-Za-z0-9_]*).*/\1 \2/')
while read -r file name; do
	[[ -n $name && $name =~ $FUZZ ]] || continue
	pkg=./$(dirname "$file")
	out=$("$GO" test -run "^$name\$" -fuzz "^$name\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1) || { status=1; echo "$out"; }
	last=$(grep -E '^fuzz: elapsed' <<<"$out" | tail -1 || true)
	echo "fuzz: $pkg $name: ${last#fuzz: }"
done <<<"$targets"
exit $status
