#!/usr/bin/env bash
# The benchmark CI job, the same locally:  scripts/ci.sh pr|main [pytest args...]
#
#   install (EXTRAS, default dev; NO_INSTALL=1: use the active environment) -> pytest bench/ (budgets gate each
#   row; results.json + results.jsonl stay)
#   -> pr: `history gate` against the merge base of BASE_REF (default origin/main); suspects whose spread the
#      history cannot tell yet are re-run in RERUNS (default 2) fresh processes; SAME_JOB=N instead measures the
#      merge base's code and the PR's as N pairs of alternating fresh processes for the timed cases the history's
#      spread cannot judge, and their paired differences decide them
#      main: `history record` (every push and nightly run that produced results), `history changes`, `history trend`
#   -> charts/ + summary.md, and report.md: the page for the job summary and the sticky PR comment.
#
# The history is $GPT2COMPRESS_HISTORY (an SQLite path or a postgresql:// URL); RUNNER_CLASS names the runner class
# (default: derived from the CPU model + ISA + threads, or the GPU); CHARTS_URL is linked from the page; PIN_CORES=N
# runs the whole job on N distinct physical cores (taskset; a 2-core runner's numbers on a bigger host). Exit status:
# non-zero if the bench or the gate failed, after everything else has run.
set -uo pipefail
mode=${1:?usage: scripts/ci.sh pr|main [pytest args...]}; shift
case $mode in pr|main) ;; *) echo "scripts/ci.sh: mode must be pr or main, got $mode" >&2; exit 2 ;; esac
summary=${GITHUB_STEP_SUMMARY:-/dev/null}
status=0

if [ -z "${NO_INSTALL:-}" ]; then
  # the lock (constraints.txt): main's run and a PR's measure the same stack; the gate refuses one that drifted
  python3 -m venv .venv && . .venv/bin/activate &&
    python -m pip install --quiet -c constraints.txt -e ".[${EXTRAS:-dev}]" || exit 1
fi
if [ -n "${PIN_CORES:-}" ] && [ -z "${PINNED_TO:-}" ]; then   # everything below (gate re-runs too) on N cores
  cpus=$(gpt2compress cores "$PIN_CORES") || exit 2
  echo "scripts/ci.sh: pinned to CPUs $cpus ($PIN_CORES distinct physical cores)"
  PINNED_TO=$cpus NO_INSTALL=1 exec taskset -c "$cpus" bash "$0" "$mode" "$@"
fi
rm -f results.json results.jsonl   # an earlier run's, left in a local checkout, must not be gated or recorded as this one
pytest bench/ --benchmark-json=results.json "$@" || status=$?
results=results.json
[ -f "$results" ] || results=results.jsonl   # the journal survives a crash that lost the JSON
if [ ! -f "$results" ]; then
  echo "scripts/ci.sh: no results were written (pytest exit $status)" >&2
  exit 1
fi
class=()
[ -n "${RUNNER_CLASS:-}" ] && class=(--runner-class "$RUNNER_CLASS")
charts=()
[ -n "${CHARTS_URL:-}" ] && charts=(--charts "$CHARTS_URL")

if [ "$mode" = pr ]; then
  gpt2compress history gate "$results" --base "${BASE_REF:-origin/main}" --budgets bench/budgets.toml \
    --reruns "${RERUNS:-2}" --same-job "${SAME_JOB:-0}" --report report.md "${class[@]}" "${charts[@]}" || status=1
else
  gpt2compress history record "$results" "${class[@]}" || status=1
  # the series this run joined: its own ref (a manual run on a branch is that branch's, never main's)
  ref="${GITHUB_REF:-$(git symbolic-ref -q HEAD || git rev-parse HEAD)}"
  parent=()   # the page against the parent commit's recorded run (or its nearest recorded ancestor)
  git rev-parse -q --verify HEAD~1 > /dev/null && parent=(--base HEAD~1)
  gpt2compress history report "$results" "${parent[@]}" "${class[@]}" "${charts[@]}" > report.md || status=1
  { echo; echo '### Change points (recorded runs)'; echo '```'
    gpt2compress history changes --ref "$ref" "${class[@]}" || status=1; echo '```'; } >> report.md
  gpt2compress history trend --out trend --ref "$ref" "${class[@]}" > /dev/null || status=1
fi
[ -f report.md ] && cat report.md >> "$summary"
gpt2compress plot "$results" --out charts && cat charts/summary.md >> "$summary" || status=1
exit "$status"
