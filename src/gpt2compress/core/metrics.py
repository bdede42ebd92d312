"""Every metric the suite gates, defined once: name, unit, direction, budget keys, compare threshold, noise floor.

Budgets (`budgets.py`), `compare`, the charts and the summary take metric names
and limits from here; a budget key or a `[[compare]]` metric that is not here is
an error that lists the known ones. A metric's value is an attribute of the
record of its kind (`records.py`); its ratio to the run's reference comes from
`ratio` below, the only place a ratio is computed.

Timing metrics with per-round `samples` are *paired*: the reference and the
variant alternate round by round, and the ratio is the median of the per-pair
ratios, so load that comes and goes during a run cancels.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable

# The built-in kinds' names (`core.kinds` registers each with its record, reference and cases).
FORWARD, GENERATE, TRAIN, CLASSIFY = "forward", "generate", "train", "classify"
# Runtimes of the peer engines: the same model run by someone else's engine, the bar ours are held to.
PEER_RUNTIMES = ("llamacpp", "ctranslate2", "onnxruntime")

# How a budget key reads a metric off a record.
RATIO = "ratio"  # the ratio to the reference (paired for timing)
VALUE = "value"  # the metric's own value, in its unit (a limit a deployment really has)
EFFICIENCY = "efficiency"  # reference / variant: 1 / ratio
DROP = "drop"  # reference − variant, in points (×100): accuracy lost


def binomial_floor(value_field: str, count_field: str) -> Callable[[Any], float]:
    """Two standard errors of a proportion p measured on n examples: 2·sqrt(p(1−p)/n). Smaller changes are
    what another draw of the eval set would show, not a regression."""

    def floor(record: Any) -> float:
        p, n = getattr(record, value_field), getattr(record, count_field)
        return 2 * math.sqrt(p * (1 - p) / n) if p is not None and n else 0.0

    return floor


def _rate_floor(rate_field: str, ms_field: str | None, ms: float) -> Callable[[Any], float]:
    """A throughput's floor: the rate change that `ms` more per call (per token without `ms_field`) makes, so a rate
    and the time it is computed from are held to the same noise floor."""

    def floor(record: Any) -> float:
        rate = getattr(record, rate_field, None)
        per_call = getattr(record, ms_field, None) if ms_field else (1000 / rate if rate else None)
        return rate - rate * per_call / (per_call + ms) if rate and per_call else 0.0

    return floor


# A CPU peak is read from the RSS by a sampler (every 2 ms): a transient it catches in one process and misses in
# another moves the peak by megabytes. Measured on Zen 4, tiny: int8-scratch's forward 28.5–34.6 MiB over four fresh
# processes (fp32 32.1–32.7), a training peak 25.8 then 31.0 MiB in an A/A pair. Less than this is not a change.
RSS_NOISE_MIB = 8.0


def _meaningful(record: Any) -> str | None:
    return None if getattr(record, "perplexity_meaningful", True) else "random weights: perplexity is not gated"


@dataclass(frozen=True)
class Metric:
    name: str
    kinds: tuple[str, ...]  # the record kinds that measure it
    field: str  # the record attribute holding its value, in `unit`
    unit: str
    better: str  # "lower" | "higher"
    label: str  # for tables and chart axes
    threshold: float  # compare: a relative change beyond this (in the bad direction) is a regression
    noise_floor: float | Callable[[Any], float] = 0.0  # compare: an absolute change (in `unit`) below this is noise
    samples: str | None = None  # record attribute with one value per round, paired with the reference's rounds
    timing: bool = False  # compared as the ratio to the run's own reference (machine drift between runs cancels)
    budgets: dict[str, str] = field(default_factory=dict)  # budget key -> how it reads the metric (RATIO, ...)
    ungated: Callable[[Any], str | None] = lambda record: None  # why this record's value must not be gated
    same: tuple[str, ...] = ()  # record fields two values must share to be compared (the eval set they scored)
    per_process: bool = False  # a peak RSS: it moves between processes of the same code, as timing does
    mirrors: str | None = None  # the metric it restates (tokens/s = tokens / latency): judged once, under that one

    @property
    def between_processes(self) -> bool:
        """Whether two processes of the same code measure it differently (timing, peak RSS): two runs alone cannot
        judge a change in it; the spread of recorded runs can (`compare`, `history gate`)."""
        return self.timing or self.per_process

    @property
    def direction(self) -> int:
        """+1 when a higher value is worse."""
        return +1 if self.better == "lower" else -1

    def value(self, record: Any) -> float | None:
        return getattr(record, self.field, None)

    def worsening(self, before: float, after: float) -> float:
        """How much worse `after` is than `before`, as a fraction (negative: better). A higher-is-better value is
        judged by its reciprocal (before / after − 1), so one slowdown reads the same in latency and in tokens/s:
        latency +60 % is tokens/s +60 % worse, where (after − before) / before would say 37.5 % and pass a
        limit that latency fails."""
        if self.better == "lower":
            return after / before - 1
        return before / after - 1 if after > 0 else math.inf

    def floor(self, record: Any) -> float:
        return self.noise_floor(record) if callable(self.noise_floor) else self.noise_floor

    def scored_on(self, record: Any) -> tuple:
        """What the value was measured on: two values with different ones are not the same quantity (a `--tier pr`
        perplexity on 512 windows against a nightly one on all of them)."""
        return tuple(getattr(record, name, None) for name in self.same)


def _metrics(*metrics: Metric) -> dict[str, Metric]:
    return {m.name: m for m in metrics}


METRICS: dict[str, Metric] = _metrics(
    Metric("perplexity", (FORWARD,), "perplexity", "", "lower", "perplexity", 0.01,
           budgets={"max_perplexity_ratio": RATIO}, ungated=_meaningful,
           same=("eval_protocol", "eval_windows", "eval_tokens")),
    Metric("latency", (FORWARD, CLASSIFY), "median_ms", "ms", "lower", "median latency, ms", 0.10, noise_floor=1.0,
           samples="latency_samples_ms", timing=True, budgets={"max_latency_ratio": RATIO}),
    Metric("tokens_per_s", (FORWARD,), "tokens_per_s", "tokens/s", "higher", "forward tokens/s", 0.10,
           noise_floor=_rate_floor("tokens_per_s", "median_ms", 1.0), samples="tokens_per_s_samples", timing=True,
           budgets={"min_tokens_per_s_ratio": RATIO}, mirrors="latency"),
    Metric("size", (FORWARD, CLASSIFY), "size_mb", "MiB", "lower", "size on disk, MiB", 0.01,
           budgets={"max_size_ratio": RATIO, "max_size_mb": VALUE}),
    Metric("peak_memory", (FORWARD,), "peak_memory_mb", "MiB", "lower", "peak memory, MiB", 0.10,
           noise_floor=RSS_NOISE_MIB, per_process=True, budgets={"max_peak_memory_mb": VALUE}),
    Metric("energy_per_sample", (FORWARD,), "energy_per_sample_mj", "mJ", "lower", "GPU energy per sample, mJ",
           0.10, budgets={"min_energy_efficiency": EFFICIENCY}),
    Metric("hellaswag_acc", (FORWARD,), "hellaswag_acc", "", "higher", "HellaSwag accuracy", 0.01,
           noise_floor=binomial_floor("hellaswag_acc", "hellaswag_examples"), same=("hellaswag_examples",)),
    Metric("hellaswag_acc_norm", (FORWARD,), "hellaswag_acc_norm", "", "higher", "HellaSwag acc_norm", 0.01,
           noise_floor=binomial_floor("hellaswag_acc_norm", "hellaswag_examples"), same=("hellaswag_examples",)),
    Metric("ttft", (GENERATE,), "ttft_ms", "ms", "lower", "time to first token, ms", 0.10, noise_floor=0.2,
           samples="ttft_samples_ms", timing=True, budgets={"max_ttft_ratio": RATIO}),
    Metric("decode_tokens_per_s", (GENERATE,), "decode_tokens_per_s", "tokens/s", "higher", "decode tokens/s", 0.10,
           noise_floor=_rate_floor("decode_tokens_per_s", None, 0.2), samples="decode_tokens_per_s_samples",
           timing=True, budgets={"min_decode_tokens_per_s_ratio": RATIO}),
    Metric("decode_p99", (GENERATE,), "decode_p99_ms", "ms", "lower", "decode ms/token p99", 0.25, noise_floor=0.2,
           timing=True),
    Metric("train_tokens_per_s", (TRAIN,), "train_tokens_per_s", "tokens/s", "higher", "training tokens/s", 0.10,
           timing=True, budgets={"min_train_tokens_per_s_ratio": RATIO}),
    Metric("train_peak_memory", (TRAIN,), "peak_memory_train_mb", "MiB", "lower", "training peak memory, MiB", 0.10,
           noise_floor=RSS_NOISE_MIB, per_process=True, budgets={"max_train_memory_ratio": RATIO}),
    Metric("accuracy", (CLASSIFY,), "accuracy", "", "higher", "accuracy", 0.01,
           noise_floor=binomial_floor("accuracy", "eval_rows"), budgets={"max_accuracy_drop": DROP}),
    Metric("f1_macro", (CLASSIFY,), "f1_macro", "", "higher", "macro F1", 0.01,
           noise_floor=binomial_floor("f1_macro", "eval_rows")),
)

BUDGET_KEYS: dict[str, Metric] = {key: m for m in METRICS.values() for key in m.budgets}


def register_metric(m: Metric) -> Metric:
    """A plugin kind's metric (`core.kinds.register_kind` calls this for `Kind.metrics`); a name or budget key
    already defined differently is an error naming it."""
    taken = [key for key in (m.name, *m.budgets) if key in METRICS or key in BUDGET_KEYS]
    if METRICS.get(m.name) is m:
        return m
    if taken:
        raise ValueError(f"metric {m.name!r}: {', '.join(taken)} already defined in metrics.METRICS: rename it")
    METRICS[m.name] = m
    BUDGET_KEYS.update({key: m for key in m.budgets})
    return m


def metric(name: str) -> Metric:
    if name not in METRICS:
        raise KeyError(f"unknown metric {name!r}; known metrics: {', '.join(METRICS)}")
    return METRICS[name]


def metrics_of(kind: str) -> list[Metric]:
    return [m for m in METRICS.values() if kind in m.kinds]


def judged_metrics(kind: str) -> list[Metric]:
    """What compare and the gate give a verdict on: one per fact (a slowdown is one line, not latency and tokens/s)."""
    return [m for m in metrics_of(kind) if not m.mirrors]


def pair_ratios(samples: list[float] | None, reference: list[float] | None) -> list[float]:
    """Round i of the variant over round i of the reference, which ran just before it."""
    if not samples or not reference or len(samples) != len(reference):
        return []
    return [s / r for s, r in zip(samples, reference) if r]


def kept_pairs(m: Metric, record: Any) -> list[float]:
    """A record's per-pair ratios to the reference rounds it kept (`Record.against`)."""
    return pair_ratios(getattr(record, m.samples, None), record.reference_rounds.get(m.samples)) if m.samples else []


MIN_INTERVAL_ROUNDS = 5  # fewer rounds a side and a percentile bootstrap's interval is mostly its own resampling


def median_ratio_interval(a: list[float], b: list[float] | None = None,
                          level: float = 0.95) -> tuple[float, float] | None:
    """Where median(a) / median(b) lands when each side's rounds are drawn again: a percentile bootstrap that
    resamples the two apart, since a's rounds were not paired with b's (two variants, each paired with its own
    reference rounds). Without b: where median(a) lands, for a record's own per-pair ratios (its × column).
    None when a side has too few rounds for the interval to mean anything."""
    sides = (a,) if b is None else (a, b)
    if min(map(len, sides)) < MIN_INTERVAL_ROUNDS:
        return None
    import numpy as np
    from scipy.stats import bootstrap

    def statistic(*xs, axis=-1):
        top = np.median(xs[0], axis=axis)
        return top if len(xs) == 1 else top / np.median(xs[1], axis=axis)

    result = bootstrap(sides, statistic, n_resamples=4000, confidence_level=level, method="percentile",
                       random_state=0)  # seeded: the same rounds give the same report
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def ratio(m: Metric, record: Any, reference: Any) -> float | None:
    """The variant's value over the reference's: the median of per-pair ratios when both have paired rounds,
    else the ratio of the values (perplexity, size, accuracy: measured once, deterministic)."""
    if m.samples:
        pairs = pair_ratios(getattr(record, m.samples, None), getattr(reference, m.samples, None))
        if pairs:
            return statistics.median(pairs)
    value, base = m.value(record), m.value(reference)
    if value is None or not base:
        return None
    return value / base


def budget_value(key: str, record: Any) -> float | None:
    """What budget `key` compares with its limit for this record (None: not measured; `record.missing` says why)."""
    m = BUDGET_KEYS[key]
    form = m.budgets[key]
    if form == VALUE:
        return m.value(record)
    r = record.ratios.get(m.name)
    if form == RATIO:
        return r
    if form == EFFICIENCY:
        return 1 / r if r else None
    base = record.reference_values.get(m.name)
    value = m.value(record)
    return None if base is None or value is None else 100 * (base - value)
