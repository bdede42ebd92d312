#!/usr/bin/env bash
# pytest-benchmark history, the CI recipe:  bench/run-with-history.sh STORAGE_DIR [pytest args...]
#
# Saves every run (--benchmark-autosave, raw rounds kept with --benchmark-save-data) under STORAGE_DIR and,
# when an earlier run is stored there, compares against it and fails on a >10 % slower median
# (--benchmark-compare-fail=median:10%). The first run on a runner has nothing to compare with: asking
# pytest-benchmark to compare-fail then is a usage error (exit 4), so those flags are only added once
# a saved run exists.
set -euo pipefail
storage=${1:?usage: bench/run-with-history.sh STORAGE_DIR [pytest args...]}; shift
mkdir -p "$storage"
compare=()
if find "$storage" -name '*.json' -print -quit | grep -q .; then
  compare=(--benchmark-compare "--benchmark-compare-fail=${COMPARE_FAIL:-median:10%}")
else
  echo "run-with-history: no saved run in $storage yet; this run becomes the first one"
fi
exec pytest bench/ --benchmark-storage="file://$(cd "$storage" && pwd)" --benchmark-autosave --benchmark-save-data \
  "${compare[@]}" "$@"
