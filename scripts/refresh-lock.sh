#!/usr/bin/env bash
# Refresh constraints.txt, the lock every install of CI, scripts/ci.sh and .ci/run takes its versions from:
# resolve pyproject.toml's ranges afresh in a throwaway venv (without the old lock) and freeze what came.
#   scripts/refresh-lock.sh            then review `git diff constraints.txt` and commit it with the change that
#                                      needs it: the gate compares that PR's bench on the new versions as its change
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)/venv
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -e ".[dev,gpu]"
{
  echo "# The lock: the versions CI, scripts/ci.sh and .ci/run install (pip install -c constraints.txt ...), so main's"
  echo "# bench and a PR's measure the same stack. Each run records this file's digest; the gate refuses a library"
  echo "# version that moved while it did not. Refresh: scripts/refresh-lock.sh (README, \"The lock\")."
  "$venv/bin/python" -m pip freeze --exclude-editable | LC_ALL=C sort -f
} > constraints.txt
rm -rf "$(dirname "$venv")"
echo "constraints.txt: $(grep -vc '^#' constraints.txt) packages"
