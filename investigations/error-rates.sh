#!/usr/bin/env bash
# The gate's error rates on this machine (issue 14): N separate processes of identical code on a warm cache, then
# every ordered pair gated as `history gate` would (the spread from the other N - 1, the base among them), A/A and
# with a planted slowdown on each variant in turn. Prints the README table.
#
#   investigations/error-rates.sh OUT_DIR [N] [pytest args...]
#   e.g. investigations/error-rates.sh /tmp/rates 10 --model gpt2-random --tokenizer ../shared/data/gpt2-tokenizer
#
# The default selection is the forward stages the issue names; pass --stages to change it. One warm-up process
# (discarded) builds what the cache lacks, so build time never lands in a measured process.
set -euo pipefail
out=${1:?usage: investigations/error-rates.sh OUT_DIR [N] [pytest args...]}; shift
n=${1:-10}; [ $# -gt 0 ] && shift
[[ $n =~ ^[0-9]+$ ]] || {
  echo "investigations/error-rates.sh: N is the number of processes, got '$n': usage: OUT_DIR [N] [pytest args...]" >&2; exit 2; }
mkdir -p "$out"
stages=(--stages fp32,bf16,ov-int8-weights,ov-int8-static,inc-int8)
[[ " $* " == *" --stages"* ]] && stages=()
forward() { pytest bench/test_forward.py --devices cpu -q -p no:cacheprovider "${stages[@]}" "$@"; }

[ -f "$out/warm-up.json" ] || forward --benchmark-json="$out/warm-up.json" "$@" > "$out/warm-up.log" 2>&1 || true
for i in $(seq -w 1 "$n"); do
  [ -f "$out/run-$i.json" ] && continue   # resumable: a finished process is not measured again
  start=$(date +%s)
  forward --benchmark-json="$out/run-$i.json" "$@" > "$out/run-$i.log" 2>&1 || true   # a budget may fail; rows stay
  echo "error-rates: process $i/$n took $(( $(date +%s) - start )) s"
done
gpt2compress history error-rates "$out"/run-*.json | tee "$out/error-rates.md"
