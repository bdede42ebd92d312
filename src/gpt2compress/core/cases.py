"""The case matrix: every (kind, variant) the bench measures, its chain, and whether `--smoke` or a tier runs it.

Each kind lists its cases, smoke cases and tiers (`core.kinds`, `gpt2compress/kinds/`); the bench suite
parametrizes from them in one hook. Whether a case runs on a device is the stage registry's answer for its
chain (`registry.check_chain`), never a rule written here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .kinds import kind_of, kinds
from .registry import StageNotApplicable, check_chain, stage

# --smoke: that every kind, runtime and device path runs, in minutes (CI runs it on every push); each kind's
# reference case is in its selection. The LM kinds (forward, generate) share theirs:
LM_SMOKE = ("pruned", "int8-scratch", "ov-int8-static", "fp16", "bnb-nf4")

# --tier pr: what a PR gate needs, in minutes on cached builds: forward and b1 generate of the variants a team ships
# (the walk-through chain, each INT8 path, the half precisions, each seed's full stack). --tier nightly: every case.
PR_VARIANTS = ("pruned", "pruned-finetuned", "bf16", "fp16", "int8-scratch", "ov-int8-weights",
               "ov-int8-weights-f32act", "ov-int8-sym-weights-f32act", "ov-int8-static", "inc-int8", "bnb-int8",
               "bnb-nf4", "pruned-finetuned-ov-int8-static", "distilled-lora-pruned-int8",
               "distilled-lora-pruned-nf4", "llamacpp-q8_0")
# --tier tour (what a bare `pytest bench/` runs: a newcomer's first run, 6 minutes cold with the install): the
# walk-through chain and the INT8 paths quickest to build and measure, forward and b1 generate, two train setups and
# three classifiers. inc-int8 (54 s of a 5 min run: its memory probe imports INC's stack) and bf16 are the PR tier's.
TOUR_VARIANTS = ("pruned", "pruned-finetuned", "int8-scratch", "ov-int8-weights", "ov-int8-static",
                 "pruned-finetuned-ov-int8-static")
TIERS = ("tour", "pr", "nightly")  # each kind names its cases of a tier (`Kind.tiers`); nightly is every case
NIGHTLY = "nightly"
DEFAULT_TIER = "tour"  # without --tier, --smoke or --stages


def tier_of(tier: str | None, smoke: bool, stages: list[str] | None) -> str | None:
    """The tier a run selects: the one named, else the tour where nothing else narrows the selection."""
    return tier or (None if smoke or stages else DEFAULT_TIER)


@dataclass(frozen=True)
class Case:
    kind: str
    variant: str  # the name in reports, budgets and compare
    chain: tuple[str, ...]  # the stages that build the measured model
    smoke: bool = False  # set from its kind's smoke list
    trains: str | None = None  # train: the LM variant whose model is trained
    setup: Any = None  # train: how (a TrainSetup)
    aliases: tuple[str, ...] = ()  # other names `--stages` selects it by (cls-X: X)

    @property
    def is_reference(self) -> bool:
        return self.variant == kind_of(self.kind).reference

    @property
    def rule_chain(self) -> tuple[str, ...]:
        """The stages whose device rules decide where this case runs (a train precision is its cast stage's)."""
        precision = self.setup.precision if self.setup else "fp32"
        return self.chain + ((precision,) if precision != "fp32" else ())

    @property
    def build_group(self) -> str:
        """Cases that need the same trained model: `--shard` keeps them on one runner, so it trains once there.
        The chain up to its first training stage (on the LM or the classifier), else the variant itself."""
        trained = [i for i, name in enumerate(self.chain) if stage(name).trains]
        if not trained:
            return self.variant
        return f"{kind_of(self.kind).family}:{'+'.join(self.chain[:trained[0] + 1])}"

    def unsupported(self, device: str) -> str | None:
        """Why this case cannot run on `device` (from the stage registry), or None."""
        try:
            check_chain(self.rule_chain, device)
        except StageNotApplicable as reason:
            return f"{self.variant}: {reason}"
        return None


def cases(kind: str | None = None) -> list[Case]:
    """Each kind's cases, read at call time (a plugin's variant or kind adds its own), smoke ones marked."""
    out = []
    for k in (kind,) if kind else kinds():
        spec = kind_of(k)
        smoke = {spec.reference, *spec.smoke}
        out += [dataclasses.replace(c, smoke=c.variant in smoke) for c in spec.cases()]
    return out


def in_tier(c: Case, tier: str) -> bool:
    """Nightly is every case; another tier, the cases its kind names for it and its reference (a kind that names
    no tiers: all its cases in each)."""
    spec = kind_of(c.kind)
    if tier == NIGHTLY or spec.tiers is None:
        return True
    return tier in spec.tiers and c.variant in (spec.reference, *spec.tiers[tier])


def case(kind: str, variant: str) -> Case:
    found = [c for c in cases(kind) if c.variant == variant]
    if not found:
        raise KeyError(f"no {kind} case {variant!r}; known: {', '.join(c.variant for c in cases(kind))}")
    return found[0]


def names() -> list[str]:
    """Every name `--stages` accepts: the variants and the train and classify cases."""
    return list(dict.fromkeys(c.variant for c in cases()))


def select(kind: str, stages: list[str] | None, smoke: bool, tier: str | None = None) -> list[Case]:
    """`--stages` names cases: a variant selects its forward and generate cases, the train cases that train it
    and its classifier (cls-X for X); a train or classify case can be named too. `--smoke` keeps the smoke
    cases, `--tier` its tier's. A reference is selected only where `--stages` names it (or names none); its
    fixture measures it for the ratios whatever runs."""
    if tier not in (None, *TIERS):
        raise KeyError(f"unknown tier {tier!r}; known tiers: {', '.join(TIERS)}")
    chosen = []
    for c in cases(kind):
        if (smoke and not c.smoke) or (tier is not None and not in_tier(c, tier)):
            continue
        if stages is None or {c.variant, c.trains, *c.aliases} & set(stages):
            chosen.append(c)
    return chosen
