"""The GitHub workflows cannot run here; they are validated against GitHub's schema (vendored, offline)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def validate(*paths: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).with_name("check-jsonschema"))
    return subprocess.run([exe, "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
                          capture_output=True, text=True, timeout=120)


def test_workflows_match_githubs_schema():
    result = validate(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_can_fail(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("name: x\non: push\njobs:\n  a:\n    runs-on: [self-hosted]\n    stepz: []\n")
    assert validate(broken).returncode != 0


@pytest.mark.parametrize("name,labels,device,extras", [
    ("bench-cpu.yml", ["self-hosted", "cpu"], "cpu", "dev"),
    ("bench-t4.yml", ["self-hosted", "gpu", "t4"], "cuda", "dev,gpu")])
def test_bench_jobs_gate_prs_record_main_and_keep_evidence(name, labels, device, extras):
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    job = workflow["jobs"]["bench"]
    assert str(labels).replace("'", '"') in job["runs-on"] and job["env"]["EXTRAS"] == extras  # bnb on the T4
    script = "\n".join(step.get("run", "") for step in job["steps"])
    assert f"--model gpt2 --data wikitext2 --tier ${{{{ env.TIER }}}} --devices {device}" in script
    assert "HF_HOME" in job["env"]
    assert job["env"]["TIER"] == ("${{ (github.event_name == 'schedule' || github.event_name == 'workflow_dispatch') "
                                  "&& 'nightly' || 'pr' }}")  # pushes record the tier PRs are gated against
    assert "scripts/ci.sh ${{ github.event_name == 'pull_request' && 'pr' || 'main' }}" in script
    bench = next(step for step in job["steps"] if "scripts/ci.sh" in step.get("run", ""))
    assert bench["env"]["SAME_JOB"] == 3  # PRs: base and PR measured side by side where the history is blind
    assert "GPT2COMPRESS_HISTORY" in job["env"] and "fetch-depth" in str(job["steps"][1])
    assert workflow["permissions"] == {"contents": "read"} and "schedule" in workflow[True]  # yaml reads `on` as True
    assert workflow["concurrency"]["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"
    assert workflow["concurrency"]["group"].endswith("${{ github.event_name == 'pull_request' && github.ref || "
                                                     "github.run_id }}")  # no push or nightly run is ever dropped
    assert "head.repo.full_name != github.repository" in job["runs-on"]  # fork PRs never touch the runner's history
    assert all("timeout-minutes" in step for step in job["steps"] if "run" in step)
    uploads = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert uploads and uploads[0]["with"]["overwrite"] is True and uploads[0]["with"]["retention-days"]
    assert all(p in uploads[0]["with"]["path"] for p in ("results.json", "results.jsonl", "charts/", "traces/"))
    assert "github.run_attempt" in uploads[0]["with"]["name"]  # a re-run does not collide (409)
    assert job["permissions"] == {"contents": "read", "pull-requests": "write"}  # the one comment, nothing more
    comment = next(s for s in job["steps"] if "sticky-pull-request-comment" in s.get("uses", ""))
    assert comment["with"]["path"] == "report.md" and "pull_request" in comment["if"]
    assert all(p in uploads[0]["with"]["path"] for p in ("report.md", "trend/"))


def test_the_nightly_cpu_run_is_split_over_two_runners():
    job = yaml.safe_load((ROOT / ".github" / "workflows" / "bench-cpu.yml").read_text())["jobs"]["bench"]
    assert "schedule" in job["strategy"]["matrix"]["shard"] and job["strategy"]["fail-fast"] is False
    script = "\n".join(step.get("run", "") for step in job["steps"])
    assert "--shard ${{ matrix.shard }}/" in script


def test_the_cpu_job_installs_the_llama_cpp_peer_its_pr_tier_measures():
    from gpt2compress.core.cases import PR_VARIANTS
    job = yaml.safe_load((ROOT / ".github" / "workflows" / "bench-cpu.yml").read_text())["jobs"]["bench"]
    steps = [s for s in job["steps"] if "scripts/install-llamacpp.sh" in s.get("run", "")]
    assert "llamacpp-q8_0" in PR_VARIANTS and steps   # without it the decode-vs-llama.cpp line is always a skip
    assert "LLAMACPP_WHEELS" in steps[0]["env"] and "if" not in steps[0]   # every tier, from the runner's wheel cache
    runs = [s.get("run", "") for s in job["steps"]]
    assert runs.index(steps[0]["run"]) < next(i for i, run in enumerate(runs) if "scripts/ci.sh" in run)  # before


def test_the_ci_script_gates_prs_records_main_and_reports():
    script = (ROOT / "scripts" / "ci.sh").read_text()
    assert "gpt2compress history gate" in script and "gpt2compress history record" in script
    assert "gpt2compress plot" in script and "GITHUB_STEP_SUMMARY" in script and "results.jsonl" in script
    assert "--report report.md" in script and "--reruns" in script and "history changes" in script
    checked = subprocess.run(["bash", "-n", str(ROOT / "scripts" / "ci.sh")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    usage = subprocess.run(["bash", str(ROOT / "scripts" / "ci.sh"), "nightly"], capture_output=True, text=True)
    assert usage.returncode == 2 and "mode must be pr or main" in usage.stderr


def test_every_install_takes_the_lock_and_the_lock_keeps_pyprojects_pins():
    """main's bench and a PR's measure the same stack only if every install reads constraints.txt; a pin in
    pyproject.toml that the lock contradicts would make that install fail, or the lock stale."""
    import re
    import tomllib

    installs = {path: [line for line in (ROOT / path).read_text().splitlines()
                       if re.search(r"pip install [^#]*-e ", line)]
                for path in ("README.md", ".ci/run", "scripts/ci.sh", ".github/workflows/bench-cpu.yml",
                             ".github/workflows/bench-t4.yml")}
    assert all(installs.values()), installs
    assert [line for lines in installs.values() for line in lines if "-c constraints.txt" not in line] == []
    locked = dict(line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().splitlines()
                  if line and not line.startswith("#"))
    locked = {name.lower().replace("_", "-"): version for name, version in locked.items()}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    pins = dict(re.match(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?==([^;\s]+)", r).groups() for r in requirements if "==" in r)
    contradicted = {name: (version, locked.get(name.lower())) for name, version in pins.items()
                    if name.lower() in locked and locked[name.lower()] != version}
    assert contradicted == {}, contradicted
    assert {"torch", "openvino", "nncf", "transformers", "numpy"} <= set(locked)


def test_a_fork_pr_fails_its_bench_check_saying_why_instead_of_a_green_skip():
    fork = "github.event.pull_request.head.repo.full_name != github.repository"
    for name in ("bench-cpu.yml", "bench-t4.yml"):
        job = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())["jobs"]["bench"]
        assert "if" not in job  # a job-level `if` makes the check "skipped", which satisfies a required check
        assert fork in job["runs-on"] and "'ubuntu-latest'" in job["runs-on"]  # never the self-hosted runner
        first = job["steps"][0]
        assert fork in first["if"] and "exit 1" in first["run"] and "not benchmarked" in first["run"]
        assert all(fork in step["if"] for step in job["steps"][1:] if "always()" in step.get("if", "")
                   and "upload-artifact" in step.get("uses", ""))


def test_ci_sh_draws_the_trend_and_change_points_of_the_ref_it_recorded():
    """A run on a branch joins that branch's series: `changes` and `trend` read the ref the run was recorded under,
    not every ref's runs mixed into one line."""
    script = (ROOT / "scripts" / "ci.sh").read_text()
    assert 'ref="${GITHUB_REF:-$(git symbolic-ref -q HEAD' in script
    assert 'history changes --ref "$ref"' in script and 'history trend --out trend --ref "$ref"' in script


def _minutes(value, nightly: bool) -> int:
    """A timeout as a number: `${{ cond && NIGHTLY || PR }}` read for the run it applies to."""
    if isinstance(value, int):
        return value
    nightly_value, pr_value = map(int, re.findall(r"&& (\d+) \|\| (\d+)", value)[0])
    return nightly_value if nightly else pr_value


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_steps_limit_fits_in_its_jobs_limit(path):
    """A step may use all of its own limit and the job still finish its later steps (the upload of what was
    measured): the steps' limits added up stay within the job's, for a nightly and a PR run alike."""
    for job in yaml.safe_load(path.read_text())["jobs"].values():
        for nightly in (True, False):
            steps = sum(_minutes(step.get("timeout-minutes", 0), nightly) for step in job["steps"])
            assert steps <= _minutes(job["timeout-minutes"], nightly), (path.name, nightly, steps)
        if path.name.startswith("bench-"):
            assert all("timeout-minutes" in step for step in job["steps"])


def test_the_steps_limits_check_can_fail():
    job = {"timeout-minutes": "${{ x && 330 || 150 }}",
           "steps": [{"timeout-minutes": 40}, {"timeout-minutes": "${{ y && 300 || 110 }}"}]}
    assert sum(_minutes(s["timeout-minutes"], True) for s in job["steps"]) > _minutes(job["timeout-minutes"], True)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_third_party_actions_are_pinned_by_commit(path):
    """A tag can be moved to other code; a commit cannot. The release is named beside it for the reader."""
    uses = re.findall(r"uses: *(\S+)(.*)", path.read_text())
    assert uses
    for action, comment in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", action), action
        assert re.search(r"# v\d+\.\d+\.\d+", comment), (action, "name the release it pins")


def test_the_hosted_tests_job_reads_only_runs_once_per_change_and_caches_pip():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "tests.yml").read_text())
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow[True]["push"] == {"branches": ["main"]} and "pull_request" in workflow[True]  # not twice a PR
    assert workflow["concurrency"]["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"
    python = next(s for s in workflow["jobs"]["tests"]["steps"] if "setup-python" in s.get("uses", ""))
    assert python["with"]["cache"] == "pip" and python["with"]["cache-dependency-path"] == "constraints.txt"
