#!/usr/bin/env bash
# CI: the tree's duplicated places (the `duplicates` command of the team's tool library) may only go down.
# The budget is the number in .ci/duplicates-budget; lower it when a change removes pairs.
set -euo pipefail
cd "$(dirname "$0")/../.."
budget=$(tr -dc '0-9' < .ci/duplicates-budget)
if ! command -v duplicates >/dev/null; then
  echo "duplicates-budget: the \`duplicates\` command is not on this machine; nothing checked (CI has it)" >&2
  exit 0
fi
line=$(duplicates --seconds 300 --most 200 | head -1)
echo "duplicates-budget: $line"
case "$line" in
  "no duplicates"*) n=0 ;;
  *) n=$(echo "$line" | awk '{print $1}') ;;
esac
if ! [[ "$n" =~ ^[0-9]+$ ]]; then
  echo "duplicates-budget: could not read a pair count from: $line" >&2
  exit 1
fi
if [ "$n" -gt "$budget" ]; then
  echo "duplicates-budget: $n pairs, over the budget of $budget: \`duplicates --change --base origin/main\` shows what a change wrote twice" >&2
  duplicates --seconds 300 --most 200 | sed -n '2,$p' >&2
  exit 1
fi
echo "duplicates-budget: $n pairs, within the budget of $budget"
