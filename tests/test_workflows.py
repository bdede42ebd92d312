"""The GitHub workflows cannot run here; they are validated against GitHub's schema (vendored, offline)."""

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


@pytest.mark.parametrize("name,labels,device", [("bench-cpu.yml", ["self-hosted", "cpu"], "cpu"),
                                                 ("bench-t4.yml", ["self-hosted", "gpu", "t4"], "cuda")])
def test_bench_jobs_gate_and_keep_evidence(name, labels, device):
    job = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())["jobs"]["bench"]
    assert job["runs-on"] == labels
    script = "\n".join(step.get("run", "") for step in job["steps"])
    assert f"--model gpt2 --data wikitext2 --device {device}" in script and "HF_HOME" in job["env"]
    assert "run-with-history.sh" in script and "gpt2compress compare" in script and "gpt2compress plot" in script
    uploads = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert uploads and all(p in uploads[0]["with"]["path"] for p in ("results.json", "charts/", "traces/"))
