#!/usr/bin/env bash
# The paired ratio under load (issue 13): the forward selection once quiet, then again with CPU-bound processes
# started halfway through, as a neighbour on a CI runner would; then `compare` of the two, per variant.
#
#   investigations/under-load.sh OUT_DIR [pytest args...]        e.g. investigations/under-load.sh /tmp/load --model gpt2-random
#
# LOAD_PROCS (default 2) busy processes. Budgets are not the point here, so a broken one does not stop the script.
set -uo pipefail
out=${1:?usage: investigations/under-load.sh OUT_DIR [pytest args...]}; shift
mkdir -p "$out"
forward() { pytest bench/test_forward.py --devices cpu -q -p no:cacheprovider --benchmark-json="$out/$1.json" "${@:2}"; }

start=$(date +%s)
forward quiet "$@" > "$out/quiet.log" 2>&1
half=$(( ($(date +%s) - start) / 2 ))

forward loaded "$@" > "$out/loaded.log" 2>&1 &
run=$!
sleep "$half"
busy=()
for _ in $(seq "${LOAD_PROCS:-2}"); do python3 -c "while True: pass" & busy+=($!); done
echo "under-load: ${#busy[@]} busy process(es) started ${half} s into the loaded run"
wait "$run"
kill "${busy[@]}"
gpt2compress compare "$out/quiet.json" "$out/loaded.json" --markdown
