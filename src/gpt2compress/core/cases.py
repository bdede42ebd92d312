"""The case matrix: every (kind, variant) the bench measures, its chain, and whether `--smoke` runs it.

One table for the four kinds; the bench suite parametrizes from it in one hook.
Whether a case runs on a device is the stage registry's answer for its chain
(`registry.check_chain`), never a rule written here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .metrics import CLASSIFY, FORWARD, GENERATE, KINDS, TRAIN, reference_of
from ..measure.classify import CLASSIFY_VARIANTS
from .registry import StageNotApplicable, check_chain, stage
from ..measure.training import TrainSetup
from .variants import BASELINE, VARIANTS

# name: (variant whose model is trained, how it is trained) -- seed 003's setups and seed 001's LoRA
TRAIN_SETUPS: dict[str, tuple[str, TrainSetup]] = {
    reference_of(TRAIN): (BASELINE, TrainSetup()),
    "fp32-eager": (BASELINE, TrainSetup(attention="eager")),
    "bf16-autocast": (BASELINE, TrainSetup(precision="bf16")),
    "fp16-autocast": (BASELINE, TrainSetup(precision="fp16")),
    "distilled-lora": ("distilled", TrainSetup(lora_rank=8)),  # seed 001: LoRA on the distilled student
}

# --smoke: that every kind, runtime and device path runs, in minutes (CI runs it on every push); each kind's
# reference case is in its selection
SMOKE = {kind: (reference_of(kind), *others) for kind, others in {
    FORWARD: ("pruned", "int8-scratch", "ov-int8-static", "fp16", "bnb-nf4"),
    GENERATE: ("pruned", "int8-scratch", "ov-int8-static", "fp16", "bnb-nf4"),
    TRAIN: ("bf16-autocast", "fp16-autocast"),
    CLASSIFY: ("cls-int8-scratch", "cls-ov-int8-static", "cls-bnb-nf4"),
}.items()}

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
TIERS: dict[str, dict[str, tuple[str, ...]] | None] = {
    "tour": {**{kind: (reference_of(kind), *TOUR_VARIANTS) for kind in (FORWARD, GENERATE)},
             TRAIN: (reference_of(TRAIN), "bf16-autocast"), CLASSIFY: (reference_of(CLASSIFY), "cls-int8-scratch",
                                                                     "cls-ov-int8-static")},
    "pr": {kind: (reference_of(kind), *PR_VARIANTS) for kind in (FORWARD, GENERATE)},
    "nightly": None,  # everything
}
DEFAULT_TIER = "tour"  # without --tier, --smoke or --stages


def tier_of(tier: str | None, smoke: bool, stages: list[str] | None) -> str | None:
    """The tier a run selects: the one named, else the tour where nothing else narrows the selection."""
    return tier or (None if smoke or stages else DEFAULT_TIER)


@dataclass(frozen=True)
class Case:
    kind: str
    variant: str  # the name in reports, budgets and compare
    chain: tuple[str, ...]  # the stages that build the measured model
    smoke: bool = False
    trains: str | None = None  # train: the LM variant whose model is trained
    setup: TrainSetup | None = None  # train: how

    @property
    def is_reference(self) -> bool:
        return self.variant == reference_of(self.kind)

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
        family = "classifier" if self.kind == CLASSIFY else "lm"
        return f"{family}:{'+'.join(self.chain[:trained[0] + 1])}"

    def unsupported(self, device: str) -> str | None:
        """Why this case cannot run on `device` (from the stage registry), or None."""
        try:
            check_chain(self.rule_chain, device)
        except StageNotApplicable as reason:
            return f"{self.variant}: {reason}"
        return None


def cases(kind: str | None = None) -> list[Case]:
    """Read from the variant tables at call time, so a plugin that adds a variant adds its cases."""
    out = []
    for k in (kind,) if kind else KINDS:
        if k in (FORWARD, GENERATE):
            out += [Case(k, v, chain, v in SMOKE[k]) for v, chain in VARIANTS.items()]
        elif k == TRAIN:
            out += [Case(k, name, VARIANTS[v], name in SMOKE[k], v, setup) for name, (v, setup) in TRAIN_SETUPS.items()]
        elif k == CLASSIFY:
            out += [Case(k, v, chain, v in SMOKE[k]) for v, chain in CLASSIFY_VARIANTS.items()]
        else:
            raise KeyError(f"unknown kind {k!r}; known kinds: {', '.join(KINDS)}")
    return out


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
    in_tier = TIERS.get(tier) if tier else None
    chosen = []
    for c in cases(kind):
        if (smoke and not c.smoke) or (in_tier is not None and c.variant not in in_tier.get(kind, ())):
            continue
        aliases = {c.variant, c.trains, c.variant.removeprefix("cls-") if kind == CLASSIFY else None}
        if stages is None or aliases & set(stages):
            chosen.append(c)
    return chosen
