#!/usr/bin/env bash
# `make test`: the whole suite as two pytest sessions side by side.
#   - the tests on isolated stacks of their own (marker `own_stack`: kill -9 of every part, the 6-minute broker
#     outage, the stack's own up/kill/recover/down), which spend most of their time waiting on outages and restarts;
#   - everything else, on the main stack.
# The two share no port and no state, so the suite takes about the longer of the two rather than their sum. The
# own-stack session's output goes to a log (named at the start, its summary printed at the end); the exit status
# is non-zero when either session fails. `pytest` alone still runs everything in one session.
#   infra/scripts/run-tests.sh [PYTEST ARGS...]   (e.g. -x; both sessions get them)
set -uo pipefail
cd "$(dirname "$0")/../.."
RUN=${RUN:-uv run --frozen}
state=${COINPULSE_STATE_DIR:-.coinpulse}
mkdir -p "$state/logs"
log="$state/logs/test-own-stack.log"
echo "run-tests: the own-stack tests run beside the rest; their output: $log"
start=$(date +%s)
$RUN pytest -m own_stack -p no:cacheprovider "$@" >"$log" 2>&1 &
side=$!
trap 'kill $side 2>/dev/null' INT TERM
$RUN pytest -m "not own_stack" "$@"
main_rc=$?
[ "$main_rc" -eq 5 ] && main_rc=0  # pytest's "no test selected" (arguments that pick only own-stack tests)
if kill -0 "$side" 2>/dev/null; then
  echo "run-tests: the main session is done; waiting for the own-stack session ($log)"
fi
wait "$side"
side_rc=$?
[ "$side_rc" -eq 5 ] && side_rc=0  # arguments that pick no own-stack test
echo "run-tests: ---- the own-stack session (tests on isolated stacks of their own), from $log ----"
sed -n '/slowest .* durations/,$p' "$log" | head -80
echo "run-tests: main session exit $main_rc, own-stack session exit $side_rc, $(( $(date +%s) - start )) s in all"
if [ "$side_rc" -ne 0 ] && ! grep -q "slowest .* durations" "$log"; then
  tail -n 80 "$log"  # the session failed before its summary (collection, set-up): show why
fi
[ "$main_rc" -eq 0 ] && [ "$side_rc" -eq 0 ]
