#!/usr/bin/env bash
# Run a command while N busy-loop processes compete for the cores (default 2), then stop them; prints the load
# average before and after. `make test-loaded` uses it: a test that only passes on an idle machine fails here.
#   infra/scripts/under-load.sh [N] -- COMMAND [ARGS...]
set -uo pipefail
n=2
if [ "${1:-}" != "--" ]; then n="$1"; shift; fi
[ "${1:-}" = "--" ] && shift
pids=()
for _ in $(seq "$n"); do
  ( trap 'exit 0' TERM; while :; do :; done ) &
  pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
echo "under-load: $n busy loops (pids ${pids[*]}); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$@"
rc=$?
echo "under-load: done (exit $rc); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $rc
