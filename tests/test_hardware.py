"""Pinned runs: which CPUs `gpt2compress cores N` picks for taskset, and that a pinned run records itself as one."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from gpt2compress.build.hardware import cpu_list, cpus_allowed, distinct_cores
from helpers import ROOT


def test_two_cores_never_means_two_siblings_of_one_core():
    siblings_adjacent = lambda cpu: ("0", str(cpu // 2))  # noqa: E731 - CPUs 0 and 1 share core 0
    siblings_far = lambda cpu: ("0", str(cpu % 4))  # noqa: E731 - CPUs 0 and 4 share core 0 (Linux's usual order)
    assert distinct_cores(2, list(range(8)), siblings_adjacent) == [0, 2]
    assert distinct_cores(2, list(range(8)), siblings_far) == [0, 1]
    two_packages = lambda cpu: (str(cpu // 4), str(cpu))  # noqa: E731
    assert distinct_cores(2, [3, 4, 5, 6], two_packages) == [4, 5]  # the package with more cores, never one of each
    with pytest.raises(ValueError, match="ask for at most 4"):
        distinct_cores(5, list(range(8)), siblings_far)


def test_cpu_lists_are_written_as_taskset_reads_them():
    assert cpu_list([5, 0, 1, 2, 8, 9]) == "0-2,5,8-9"
    assert cpu_list([3]) == "3"


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) is not installed")
def test_a_run_pinned_by_taskset_records_its_cpus_and_threads():
    cpu = str(cpus_allowed()[0])
    pinned = ["taskset", "-c", cpu, sys.executable]
    assert subprocess.run([*pinned, "-m", "gpt2compress.cli", "cores", "1"], capture_output=True, text=True,
                          check=True).stdout.strip() == cpu
    refused = subprocess.run([*pinned, "-m", "gpt2compress.cli", "cores", "2"], capture_output=True, text=True)
    assert refused.returncode == 2 and "ask for at most 1" in refused.stderr
    # what pytest-benchmark's JSON will say of the machine (the plugin's hook), from inside the pinned process
    hook = ("import json; from gpt2compress.suite import plugin; m = {}; "
            "plugin.pytest_benchmark_update_machine_info(None, m); "
            "print(json.dumps(m['gpt2compress']))")
    info = json.loads(subprocess.run([*pinned, "-c", hook], cwd=ROOT, capture_output=True, text=True, check=True,
                                     env=os.environ).stdout.splitlines()[-1])
    assert info["cpus_allowed"] == [int(cpu)] and info["threads"] == 1  # torch's pool followed the affinity
    assert info["cpus_online"] == os.cpu_count()


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) is not installed")
def test_the_ci_job_runs_pinned_when_asked(tmp_path):
    for part in ("bench", "scripts", "pyproject.toml"):
        (shutil.copytree if (ROOT / part).is_dir() else shutil.copy)(ROOT / part, tmp_path / part)
    env = {**os.environ, "PIN_CORES": "1", "NO_INSTALL": "1",
           "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PINNED_TO", None)
    done = subprocess.run(["bash", "scripts/ci.sh", "main", "--collect-only", "-p", "no:cacheprovider"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    cpu = re.search(r"scripts/ci.sh: pinned to CPUs (\d+) \(1 distinct", done.stdout)
    assert cpu, done.stdout + done.stderr
    assert f"1 thread on CPUs {cpu[1]} of {os.cpu_count()}" in done.stdout  # pytest's header, from the pinned job
