"""`gpt2compress history report --markdown` (and `history gate --report FILE`): one page for the job summary
and the sticky PR comment — the verdict, regressions, improvements, what was skipped and why, links to charts.

The page starts with a hidden marker naming the runner class that measured it. The workflows keep one sticky
comment each (bench-cpu, bench-t4: the action's `header`), which every push edits instead of adding another.
"""

from __future__ import annotations

from .compare import format_markdown
from .gate import GateResult, annotations, blind_spots, spread_note
from .runs import Run, describe_machine

MARKER = "<!-- gpt2compress-report:{runner} -->"


def skipped(run: Run) -> list[tuple[str, str]]:
    """(test, reason) of every bench case the run skipped (bench/conftest.py keeps them in the machine info)."""
    return [(s["test"], s["reason"]) for s in run.machine.get("gpt2compress", {}).get("skipped", [])]


def page(run: Run, runner: str, result: GateResult | None = None, charts: str | None = None,
         commit: str | None = None) -> str:
    """`result`: the gate against the base (None: no base to compare with — the run's own rows only); `commit`: the
    head the run measured, named beside the base so a reader sees which two commits were compared."""
    lines = [MARKER.format(runner=runner)]
    measured = (f"Head: {commit[:12]}, " if commit else "") + f"measured on {describe_machine(run.machine)}."
    measured = measured[0].upper() + measured[1:]
    if result is None:
        lines += [f"## gpt2compress on {runner}: {len(run.records)} rows recorded", "",
                  measured, "No base run to compare with (`history gate --base REF` needs a recorded merge base)."]
    else:
        verdict = ("refused" if result.refusals else "accepted regression" if result.failed is False and
                   result.regressions else "regression" if result.failed else "no regression")
        lines += [f"## gpt2compress on {runner}: {verdict}", "",
                  measured, f"Base: run {result.base.id} of {result.base_note}. {spread_note(result)}."]
        if result.refusals:
            lines += ["", f"### Refused ({len(result.refusals)})", "", *(f"- {line}" for line in result.refusals)]
        if result.paired:
            lines += ["", "### Measured in this job: the merge base's code and this PR's, alternating", "",
                      *(f"- {p.line()}" for p in result.paired)]
        if shown := result.coverage.lines()[len(result.coverage.failures):] + result.drift.lines():
            lines += ["", "<details><summary>Cases and stack against the base</summary>", "",
                      *(f"- {line}" for line in shown), "", "</details>"]
        if result.rerun_note:
            lines.append(f"{result.rerun_note}.")
        if result.accepted:
            lines.append(f"Accepted: {result.accepted}")
        if spots := blind_spots(result):
            lines += ["", "<details><summary>Where the gate is blind on this runner class</summary>", "",
                      *(f"- {s}" for s in spots), "", "</details>"]
        sections = (("Regressions", result.regressions), ("Improvements", [f for f in result.findings if f.improved]))
        for title, findings in sections:
            lines += ["", f"### {title} ({len(findings)})", ""]
            lines.append(format_markdown(findings) if findings else "none")
        if result.regressions:
            lines += ["", "```", *annotations(result), "```"]
    gone = skipped(run)
    lines += ["", f"### Skipped ({len(gone)})", ""]
    lines += [f"- `{test}`: {reason}" for test, reason in gone] or ["none"]
    if charts:
        lines += ["", f"Charts, traces and the full results: [{charts}]({charts})"]
    if result is not None and result.findings:
        lines += ["", "<details><summary>Every comparison</summary>", "", format_markdown(result.findings), "",
                  "</details>"]
    return "\n".join(lines) + "\n"
