"""Fresh pytest processes of a run's own command: the gate's re-runs of suspects and `--same-job`'s pairs.

A process keeps the run's options (its session facts hold the command line and the directory it ran in) and takes
its own selection and outputs. With a `checkout` (a worktree of another commit, the merge base) it runs that
commit's package, bench and conftest: every path the command names inside the run's repository moves to the same
place in the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .runs import Run, load_run


def fresh_process(new: Run, variants: list[str], out: Path, checkout: Path | None = None) -> Run | None:
    """`variants` measured by a fresh pytest process with the run's own options (its session facts keep the command
    line), in the directory it ran in, or with `checkout`'s code and bench (another commit's worktree).
    None: it wrote no results."""
    command, cwd = process_command(new, variants, out, checkout)
    env = None
    if checkout is not None:  # its own package ahead of the run's editable install
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(checkout / "src"),
                                                                         os.environ.get("PYTHONPATH")]))}
    subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, check=False)
    return load_run(out) if out.exists() else None


def process_command(new: Run, variants: list[str], out: Path, checkout: Path | None = None) -> tuple[list[str], Path]:
    """The command and directory of `fresh_process`. With `checkout`, every path the command names inside the run's
    repository is moved to the same place in `checkout` (its bench and conftest, not the run's), except a file only
    the run's tree has (an untracked budgets file), which stays where it is."""
    workdir = Path(new.session.get("cwd") or ".").resolve()
    top = toplevel(workdir) if checkout else None
    keep, skip = [], False
    # The selection and outputs are this process's own; a shard of the suspects alone could hold none of them.
    own = ("--stages", "--benchmark-json", "--journal", "--shard")
    for arg in new.session.get("argv") or []:
        if skip:
            skip = False
        elif arg in own:
            skip = True
        elif not arg.startswith((*(f"{o}=" for o in own), "--benchmark-autosave")):
            keep.append(_moved(arg, workdir, top, checkout) if checkout and top else arg)
    command = [sys.executable, "-m", "pytest", *keep, "--stages", ",".join(variants), f"--benchmark-json={out}",
               "-p", "no:cacheprovider", "-q"]
    return command, (workdir if checkout is None or top is None else checkout / workdir.relative_to(top))


def toplevel(path: Path | str) -> Path | None:
    """The root of the git checkout holding `path` (None: not in one)."""
    try:
        done = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(done.stdout.strip()) if done.returncode == 0 else None


def _moved(arg: str, workdir: Path, top: Path, checkout: Path) -> str:
    path = (workdir / arg.split("::")[0]).resolve()  # a node id's file part, or a plain path
    if arg.startswith("-") or not path.exists() or not path.is_relative_to(top):
        return arg
    there = checkout / path.relative_to(top)
    return str(there) + arg[len(arg.split("::")[0]):] if there.exists() else str(path)
