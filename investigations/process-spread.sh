#!/usr/bin/env bash
# Issue 39, item 4: where does the between-process spread of INT8 latency ratios come from? N rounds; each round runs
# one fresh pytest process per SETTING (interleaved, so drift in the machine hits all settings alike) of the forward
# cases of fp32 and three INT8 variants at the 124M shape, then prints each setting's per-process ratios to fp32 and
# their spread (max/min - 1, and the sd in %).
#
#   investigations/process-spread.sh OUT_DIR N [pytest args...]
#   SETTINGS="default omp-passive" (default): each a name below; add your own to the case statement.
set -euo pipefail
out=${1:?usage: investigations/process-spread.sh OUT_DIR N [pytest args...]}; n=${2:?N}; shift 2
mkdir -p "$out"
settings=(${SETTINGS:-default omp-passive})
stages=(--stages fp32,ov-int8-static,ov-int8-weights,inc-int8)
env_of() {   # the environment one setting runs under
  case $1 in
    default) echo "" ;;
    omp-passive) echo "OMP_WAIT_POLICY=PASSIVE" ;;     # torch's OpenMP workers sleep instead of spinning after a call
    omp-1) echo "OMP_NUM_THREADS=1" ;;                 # torch on one thread: nothing of torch's beside OpenVINO's
    *) echo "process-spread.sh: unknown setting '$1' (default, omp-passive, omp-1)" >&2; exit 2 ;;
  esac
}
for i in $(seq -w 1 "$n"); do
  for s in "${settings[@]}"; do
    [ -f "$out/$s-$i.json" ] && continue
    env $(env_of "$s") GPT2COMPRESS_MEMORY_PROBE=0 pytest bench/test_forward.py --devices cpu -q -p no:cacheprovider \
      "${stages[@]}" "$@" --benchmark-json="$out/$s-$i.json" > "$out/$s-$i.log" 2>&1 || true
  done
  echo "process-spread: round $i/$n done"
done
python3 - "$out" "${settings[@]}" <<'PY'
import json, statistics, sys
from pathlib import Path
out, settings = Path(sys.argv[1]), sys.argv[2:]
for s in settings:
    ratios = {}
    for f in sorted(out.glob(f"{s}-*.json")):
        med = {b["name"].split("[")[1].rsplit("-", 1)[0]: b["stats"]["median"]
               for b in json.loads(f.read_text())["benchmarks"] if b["name"].startswith("test_forward")}
        for v, t in med.items():
            if v != "fp32" and "fp32" in med:
                ratios.setdefault(v, []).append(t / med["fp32"])
    print(f"## {s}")
    for v, r in ratios.items():
        sd = 100 * statistics.stdev(r) / statistics.mean(r) if len(r) > 1 else float("nan")
        print(f"{v:18} n={len(r):2} ratio {min(r):.3f}-{max(r):.3f} spread {100 * (max(r) / min(r) - 1):5.1f} % sd {sd:4.1f} %"
              f"  [{' '.join(f'{x:.3f}' for x in r)}]")
PY
