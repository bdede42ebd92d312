#!/usr/bin/env bash
# The same-job gate's error rates, measured as CI runs it (issue 39): a warm-up round, then ROUNDS rounds of fresh
# processes, each round this checkout's code (A) before each of: itself again (A/A), and worktrees of it whose OpenVINO forward call takes
# +10 / +5 / +15 % (LEVELS) longer (a real code change in the runtime the OV variants run on: a spin at the end of
# ov_scorer.py's call until the call has taken that much more than its work did). Then every choice of PAIRS pairs of
# each series is gated as `history gate --same-job PAIRS` decides: the A/A series' false alarms and each slowdown's catches, per case.
#
#   investigations/same-job-rates.sh OUT_DIR ROUNDS PAIRS [pytest args...]
#   e.g. investigations/same-job-rates.sh /tmp/sj 5 3 --model gpt2-random --tokenizer "$PWD/../shared/data/gpt2-tokenizer" \
#          --data "$PWD/../shared/data/wikitext-2"      (absolute paths: the slower code runs in its worktree)
#
# The default selection is the PR tier's forward and b1 decode cases of three OpenVINO INT8 variants (the planted
# slowdown is in their runtime); pass --stages to change it, `-k test_forward` for forward alone. Resumable: a process whose JSON exists is not run again. Run it on a warm cache (a first process
# builds what it lacks) and with nothing else on the machine.
set -euo pipefail
out=${1:?usage: investigations/same-job-rates.sh OUT_DIR ROUNDS PAIRS [pytest args...]}
rounds=${2:?ROUNDS}; pairs=${3:?PAIRS}; shift 3
[[ $rounds =~ ^[0-9]+$ && $pairs =~ ^[0-9]+$ && $pairs -le $rounds ]] || {
  echo "investigations/same-job-rates.sh: ROUNDS and PAIRS are counts, PAIRS <= ROUNDS; got '$rounds' '$pairs'" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
stages=(--stages fp32,ov-int8-static,ov-int8-weights,ov-int8-sym-weights-f32act)
[[ " $* " == *" --stages"* ]] && stages=()
levels=(${LEVELS:-10 5 15})   # the planted slowdowns, in %, in the order each round runs them

for level in "${levels[@]}"; do   # the slower code: a worktree of HEAD with the spin planted
  tree="$out/slower-$level"
  [ -d "$tree" ] || git -C "$root" worktree add -q --detach "$tree" HEAD
  python3 - "$tree/src/gpt2compress/runtimes/openvino/scorer.py" "$level" <<'EOF'
import sys
from pathlib import Path
path, level = Path(sys.argv[1]), int(sys.argv[2])
first = "        ids = input_ids.cpu().numpy()\n"
last = "        return CausalLMOutput(logits=torch.from_numpy(logits.copy()))\n"
text = path.read_text()
if "spent *" not in text:  # the whole call, as the bench times it, takes (1 + level %) x as long
    assert first in text and last in text, "ov_scorer.py changed: update the planted slowdown"
    path.write_text(text.replace(first, "        import time\n        started = time.perf_counter()\n" + first).replace(
        last, "        out = CausalLMOutput(logits=torch.from_numpy(logits.copy()))\n"
              "        spent = time.perf_counter() - started\n"
              f"        while time.perf_counter() - started < spent * {1 + level / 100}:\n            pass\n"
              "        return out\n"))
EOF
done

process() {   # NAME DIR [pytest args]: one fresh pytest process of DIR's code
  local name=$1 dir=$2
  shift 2
  [ -f "$out/$name.json" ] && return 0
  # timing is what is gated here: no fresh-process memory probe per case (GPT2COMPRESS_MEMORY_PROBE=0)
  (cd "$dir" && PYTHONPATH="$dir/src" GPT2COMPRESS_MEMORY_PROBE=0 pytest bench/test_forward.py bench/test_generate.py --devices cpu --tier pr \
     -q -p no:cacheprovider "${stages[@]}" "$@" --benchmark-json="$out/$name.json" > "$out/$name.log" 2>&1) || true
}
# A round: a, aa (both this checkout: the A/A pair), then each slower code after a process of this checkout (the aa
# process serves the first level; the ones after get one of their own): a, aa, s10, b5, s5, b15, s15.
base_of() { local r=$1 i=$2; [ "$i" -eq 0 ] && echo "r$r-aa" || echo "r$r-b${levels[$i]}"; }
# round 0 is the gate's warm-up pair (history/same_job.py WARMUP_PAIRS): run as every round is, never counted
for r in 0 $(seq -w 1 "$rounds"); do
  start=$(date +%s)
  process "r$r-a" "$root" "$@"; process "r$r-aa" "$root" "$@"
  for i in "${!levels[@]}"; do
    [ "$i" -gt 0 ] && process "$(base_of "$r" "$i")" "$root" "$@"
    process "r$r-s${levels[$i]}" "$out/slower-${levels[$i]}" "$@"
  done
  echo "same-job-rates: round $r/$rounds took $(( $(date +%s) - start )) s"
done
{
  files=()
  for r in $(seq -w 1 "$rounds"); do files+=("$out/r$r-a.json" "$out/r$r-aa.json"); done
  echo "## A/A"; gpt2compress history error-rates --same-job "$pairs" "${files[@]}"; echo
  for i in "${!levels[@]}"; do
    files=()
    for r in $(seq -w 1 "$rounds"); do files+=("$out/$(base_of "$r" "$i").json" "$out/r$r-s${levels[$i]}.json"); done
    echo "## +${levels[$i]} % in the OpenVINO forward call"
    gpt2compress history error-rates --same-job "$pairs" "${files[@]}"; echo
  done
} | tee "$out/same-job-rates.md"
