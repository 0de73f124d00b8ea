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
samples=$(mktemp)
# the 1-minute load average every 30 s, so the note can give the load the run actually saw (not only its ends)
( trap 'exit 0' TERM; while :; do cut -d' ' -f1 /proc/loadavg >>"$samples"; sleep 30; done ) &
sampler=$!
trap 'kill "${pids[@]}" "$sampler" 2>/dev/null; rm -f "$samples"' EXIT
echo "under-load: $n busy loops (pids ${pids[*]}); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$@"
rc=$?
summary=$(awk 'NR==1{min=$1;max=$1} {s+=$1; if($1<min)min=$1; if($1>max)max=$1} END{if(NR) printf "min %.2f mean %.2f max %.2f over %d samples", min, s/NR, max, NR}' "$samples")
echo "under-load: done (exit $rc); load average: $(cut -d' ' -f1-3 /proc/loadavg); 1-min load during the run: $summary"
exit $rc
