#!/usr/bin/env bash
# The lab benchmarks of `make bench`: builds the binaries, runs skein-bench
# (bench/cmd/skein-bench) as root with a time bound, and always tears the
# lab down. Results: $BENCH_OUT (JSON) and a section appended to
# $BENCH_DOC (markdown). Knobs (environment):
#   BENCH_DURATION=4s BENCH_RATE=1000 BENCH_ROUNDS=1 BENCH_ONLY=matrix,idle
#   BENCH_TIMEOUT=9m BENCH_GOBENCH=bin/bench.txt BENCH_ARGS="--idle-conns 2000"
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
BIN=${BIN:-bin}
PREFIX=${BENCH_PREFIX:-skb}
OUT=${BENCH_OUT:-$BIN/bench-results.json}
DOC=${BENCH_DOC:-docs/benchmarks.md}
TIMEOUT=${BENCH_TIMEOUT:-9m}

if [ "$(id -u)" -ne 0 ]; then
	echo "bench: the lab needs root (network namespaces, cgroups, BPF)" >&2
	exit 1
fi
for cmd in nginx haproxy taskset nsenter iptables curl; do
	command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || { echo "bench: $cmd missing: run scripts/deps.sh" >&2; exit 1; }
done

dir="$BIN/bench-bin"
mkdir -p "$dir"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit+dirty"
ldflags="-X main.version=bench -X main.commit=$commit"
$GO build -ldflags "$ldflags" -o "$dir/skein-agent" ./cmd/skein-agent
$GO build -ldflags "$ldflags" -o "$dir/skein-ca" ./cmd/skein-ca
$GO build -o "$dir/skein-lab" ./scripts/skein-lab
$GO build -o "$dir/skein-bench" ./bench/cmd/skein-bench

teardown() { "$dir/skein-lab" --prefix "$PREFIX" down >/dev/null 2>&1 || true; }
trap teardown EXIT

args=(run --bin-dir "$dir" --prefix "$PREFIX" --out "$OUT" --doc "$DOC" --commit "$commit"
	--profile-dir "$BIN/bench-profiles" --work-dir "$BIN/bench-work")
[ -n "${BENCH_DURATION:-}" ] && args+=(--duration "$BENCH_DURATION")
[ -n "${BENCH_RATE:-}" ] && args+=(--rate "$BENCH_RATE")
[ -n "${BENCH_ROUNDS:-}" ] && args+=(--rounds "$BENCH_ROUNDS")
[ -n "${BENCH_ONLY:-}" ] && args+=(--only "$BENCH_ONLY")
[ -n "${BENCH_GOBENCH:-}" ] && [ -f "$BENCH_GOBENCH" ] && args+=(--gobench "$BENCH_GOBENCH")
# shellcheck disable=SC2206 # word splitting of extra flags is the point
[ -n "${BENCH_ARGS:-}" ] && args+=($BENCH_ARGS)
# The harness pins the proxies to CPU 1; it runs there too (it mostly waits).
timeout --kill-after=30s "$TIMEOUT" taskset -c 1 "$dir/skein-bench" "${args[@]}"
