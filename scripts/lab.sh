#!/bin/sh
# lab.sh: build skein-lab into ./bin when its sources changed, then run it.
#   scripts/lab.sh up -f scripts/topologies/demo.yaml
#   scripts/lab.sh exec client -- curl -s http://10.96.0.10/
#   scripts/lab.sh down
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/bin/skein-lab"
if [ ! -x "$bin" ] || [ -n "$(find "$root/scripts/lab" "$root/scripts/skein-lab" "$root/go.mod" -newer "$bin" -print -quit)" ]; then
	mkdir -p "$root/bin"
	(cd "$root" && go build -o "$bin" ./scripts/skein-lab)
fi
exec "$bin" "$@"
