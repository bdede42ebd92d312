"""One typed record per result kind: what a bench test fills, pytest-benchmark's JSON carries (as `extra_info`),
and reports, charts, gains, budgets and compare read back through the same class.

Modelled on optimum-benchmark's `benchmark/report.py` + `trackers/latency.py`: the record holds what was
measured (raw rounds included); statistics of the latency rounds are properties, written beside the fields for
other readers of the JSON and recomputed, not trusted, on the way back in (generate's TTFT statistics and train's
step time are stored fields). Ratios to the run's reference come from
`metrics.ratio` only, through `Record.derive_ratios`: written to the JSON for other readers, derived again
from the kept reference values and rounds when read.
"""

from __future__ import annotations

import math
import statistics
from types import SimpleNamespace
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from .metrics import CLASSIFY, FORWARD, GENERATE, METRICS, TRAIN, metrics_of, ratio

LM_REFERENCE, CLASSIFY_REFERENCE = "fp32", "cls-fp32"  # the built-in kinds' references (variants, classify)
SCHEMA = 2  # 1: the release before typed records (no `schema` key); read by `_from_v1`
MIB = 2**20


class RecordError(ValueError):
    """A results row this version cannot read; the message names the file and what is wrong."""


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile: a value that was measured, not an interpolation."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def mib(n_bytes: float | None) -> float | None:
    return None if n_bytes is None else n_bytes / MIB


@dataclass
class Record:
    """What every kind shares: which case on which device, what was measured against what, and which code built it."""

    KIND: ClassVar[str] = ""
    REFERENCE: ClassVar[str] = ""  # the variant every ratio of this kind divides by (same run, device and shape)
    DERIVED: ClassVar[tuple[str, ...]] = ()  # properties written to the JSON for other readers, ignored on read

    variant: str = ""
    device: str = ""
    model: str = ""
    chain: list[str] = field(default_factory=list)
    precision: str | None = None
    runtime: str | None = None
    build: dict = field(default_factory=dict)  # provenance: cache key, code fingerprints, library versions, commits
    ratios: dict[str, float] = field(default_factory=dict)  # metric -> this / the reference (metrics.ratio)
    reference_values: dict[str, float] = field(default_factory=dict)  # metric -> the reference's value in this run
    # samples field -> the paired reference rounds
    reference_rounds: dict[str, list[float]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # metric -> why it was not measured
    problems: list[str] = field(default_factory=list)  # a measurement that cannot be trusted (the gate fails on it)
    unsettled_rounds: int = 0  # paired rounds that began while another thread of the process still ran
    budget: dict[str, float] = field(default_factory=dict)  # the limits that applied
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept on a round trip

    @property
    def kind(self) -> str:
        return self.KIND

    @property
    def shape(self) -> tuple:
        """What else must match for two records to be the same case (batch shape, batch size)."""
        return ()

    @property
    def case(self) -> tuple:
        return (self.kind, self.device, self.variant, *self.shape)

    def where(self) -> str:
        shape = "".join(f"-b{s}" if isinstance(s, int) else f"-{s}" for s in self.shape)
        return f"{self.kind}/{self.device}/{self.variant}{shape}"

    def to_extra_info(self) -> dict[str, Any]:
        out = {"schema": SCHEMA, "kind": self.KIND, **{k: v for k, v in asdict(self).items() if v is not None}}
        extra = out.pop("extra")
        out.update({name: getattr(self, name) for name in self.DERIVED})
        return {**extra, **out}

    def against(self, reference: Record, paired: bool = True) -> Record:
        """Keep the reference's values (and, `paired`, its rounds, which alternated with this record's) for every
        metric of this kind, then derive the ratios from them."""
        for m in metrics_of(self.KIND):
            if m.value(reference) is not None:
                self.reference_values[m.name] = m.value(reference)
            if paired and m.samples and getattr(reference, m.samples, None) and getattr(self, m.samples, None):
                self.reference_rounds[m.samples] = list(getattr(reference, m.samples))
        return self.derive_ratios()

    def derive_ratios(self) -> Record:
        """`ratios` from the kept reference values and rounds (`metrics.ratio`): computed, never read from a file,
        so a row whose rounds changed cannot keep a stale ratio."""
        if not self.reference_values and not self.reference_rounds:
            return self  # a previous release's row: `Run.fill_ratios` divides by the run's reference row
        base = SimpleNamespace(**{METRICS[name].field: v for name, v in self.reference_values.items()},
                               **self.reference_rounds)
        self.ratios = {m.name: r for m in metrics_of(self.KIND) if (r := ratio(m, self, base)) is not None}
        return self


@dataclass
class Footprint:
    """What the build on disk is: bytes, parameters, heads, what its stages noted."""

    size_on_disk_bytes: int | None = None
    parameters: int | None = None
    heads_per_layer: list[int] | None = None
    stage_notes: dict = field(default_factory=dict)

    @property
    def size_mb(self) -> float | None:
        return mib(self.size_on_disk_bytes)


@dataclass
class AgainstCeiling:
    """Where one unit of timed work (a forward pass, a decode step) sits against this machine's ceiling
    (measure/roofline.py): `roofline` keeps the work and the limits it is held to; the rest is derived from them and
    the row's own time, never stored twice."""

    roofline: dict = field(default_factory=dict)  # macs, bytes, compute, peak_gmacs, read_gbs, threads, instruction

    def unit_seconds(self) -> float | None:
        """The measured time of one unit of the work `roofline` counts."""
        raise NotImplementedError

    def _per_second(self, key: str) -> float | None:
        seconds = self.unit_seconds() if self.roofline else None
        return self.roofline[key] / seconds / 1e9 if seconds else None

    @property
    def achieved_gmacs(self) -> float | None:
        return self._per_second("macs")

    @property
    def achieved_gbs(self) -> float | None:
        return self._per_second("bytes")

    @property
    def floor_ms(self) -> float | None:
        """The fastest this work can run here: the larger of its multiply-adds at the peak and its bytes at the
        bandwidth."""
        r = self.roofline
        return max(r["macs"] / r["peak_gmacs"], r["bytes"] / r["read_gbs"]) / 1e6 if r else None

    @property
    def binding(self) -> str | None:
        r = self.roofline
        if not r:
            return None
        return f"{r['compute']} compute" if r["macs"] / r["peak_gmacs"] >= r["bytes"] / r["read_gbs"] else "memory"

    @property
    def ceiling_share(self) -> float | None:
        """floor / measured time: 1.0 is as fast as this CPU allows."""
        seconds = self.unit_seconds() if self.roofline else None
        return self.floor_ms / 1e3 / seconds if seconds else None


CEILING_FIELDS = ("achieved_gmacs", "achieved_gbs", "floor_ms", "binding", "ceiling_share")


def _of_rounds(statistic) -> property:
    """A statistic of the latency rounds (None without rounds): derived, never stored twice."""
    return property(lambda self: statistic(self.latency_samples_ms) if self.latency_samples_ms else None)


@dataclass
class Timed:
    """Latency rounds of one timed call, in ms."""

    latency_samples_ms: list[float] = field(default_factory=list)

    median_ms = _of_rounds(statistics.median)
    latency_mean_ms = _of_rounds(statistics.fmean)
    latency_p50_ms = _of_rounds(lambda rounds: percentile(rounds, 50))
    latency_p90_ms = _of_rounds(lambda rounds: percentile(rounds, 90))
    latency_p99_ms = _of_rounds(lambda rounds: percentile(rounds, 99))
    latency_std_ms = _of_rounds(lambda rounds: statistics.stdev(rounds) if len(rounds) > 1 else None)  # seeds 001/002


@dataclass
class ForwardRecord(Footprint, Timed, AgainstCeiling, Record):
    KIND: ClassVar[str] = FORWARD
    REFERENCE: ClassVar[str] = LM_REFERENCE
    DERIVED: ClassVar[tuple[str, ...]] = ("median_ms", "latency_mean_ms", "latency_p50_ms", "latency_p90_ms",
                                          "latency_p99_ms", "latency_std_ms", "tokens_per_s", "size_mb",
                                          "peak_memory_mb", *CEILING_FIELDS)

    batch_shape: list[int] = field(default_factory=list)
    perplexity: float | None = None
    perplexity_meaningful: bool = True
    eval_windows: int | None = None
    eval_tokens: int | None = None
    peak_memory_eval_bytes: int | None = None
    scores_reused: bool | None = None  # perplexity (and its eval peak) from an earlier run of this build (scores.py)
    peak_memory_forward_bytes: int | None = None
    peak_memory_reserved_bytes: int | None = None
    peak_rss_forward_bytes: int | None = None
    gpu_event_median_ms: float | None = None
    gpu_event_min_ms: float | None = None
    mean_power_w: float | None = None
    energy_per_sample_mj: float | None = None
    energy_calls: int | None = None
    energy_seconds: float | None = None
    eval_protocol: str = "windows"  # how `perplexity` was scored (--eval-protocol); documents adds the two below
    byte_perplexity: float | None = None
    bits_per_byte: float | None = None
    hellaswag_acc: float | None = None
    hellaswag_acc_norm: float | None = None
    hellaswag_acc_stderr: float | None = None
    hellaswag_acc_norm_stderr: float | None = None
    hellaswag_examples: int | None = None

    @property
    def shape(self) -> tuple:
        return tuple(self.batch_shape)

    def where(self) -> str:
        return f"{self.kind}/{self.device}/{self.variant}"

    @property
    def tokens(self) -> int:
        return math.prod(self.batch_shape) if self.batch_shape else 0

    @property
    def tokens_per_s_samples(self) -> list[float]:
        return [self.tokens / (ms / 1e3) for ms in self.latency_samples_ms]

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / (self.median_ms / 1e3) if self.median_ms and self.tokens else None

    @property
    def peak_memory_mb(self) -> float | None:
        """CUDA: the larger of the timed forward's and the perplexity pass's device peaks. CPU: what loading the
        variant and its timed forward add to a fresh process (memory_probe.py)."""
        peaks = [p for p in (self.peak_memory_forward_bytes, self.peak_memory_eval_bytes) if p is not None]
        return mib(max(peaks)) if peaks else None

    def unit_seconds(self) -> float | None:
        return self.median_ms / 1e3 if self.median_ms else None


@dataclass
class GenerateRecord(AgainstCeiling, Record):
    """`generation.summarize` of the timed rounds; per-round TTFT and decode tokens/s pair with the reference's."""

    KIND: ClassVar[str] = GENERATE
    REFERENCE: ClassVar[str] = LM_REFERENCE
    DERIVED: ClassVar[tuple[str, ...]] = CEILING_FIELDS

    batch_size: int = 1
    prompt_len: int | None = None
    new_tokens: int | None = None
    ttft_ms: float | None = None
    ttft_mean_ms: float | None = None
    ttft_p90_ms: float | None = None
    ttft_samples_ms: list[float] = field(default_factory=list)
    decode_mean_ms: float | None = None
    decode_p50_ms: float | None = None
    decode_p90_ms: float | None = None
    decode_p99_ms: float | None = None
    decode_tokens_per_s: float | None = None
    decode_tokens_per_s_samples: list[float] = field(default_factory=list)
    per_token_stamps: bool = True
    engine_restarts: int = 0  # generation processes that died (or whose infer raised) and were replaced (genai.py)
    peak_memory_bytes: int | None = None
    peak_memory_reserved_bytes: int | None = None

    @property
    def shape(self) -> tuple:
        return (self.batch_size,)

    def unit_seconds(self) -> float | None:
        """One decode step of the whole batch."""
        return self.batch_size / self.decode_tokens_per_s if self.decode_tokens_per_s else None


@dataclass
class TrainRecord(Record):
    KIND: ClassVar[str] = TRAIN
    REFERENCE: ClassVar[str] = LM_REFERENCE
    DERIVED: ClassVar[tuple[str, ...]] = ("peak_memory_train_mb",)

    trained_variant: str | None = None
    attention: str | None = None
    tokens_per_step: int | None = None
    accumulation: int | None = None
    micro_batch: int | None = None
    steps: int | None = None
    train_tokens_per_s: float | None = None
    step_ms: float | None = None
    step_samples_ms: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    peak_memory_train_bytes: int | None = None
    peak_memory_reserved_bytes: int | None = None

    @property
    def peak_memory_train_mb(self) -> float | None:
        return mib(self.peak_memory_train_bytes)


@dataclass
class ClassifyRecord(Footprint, Timed, Record):
    KIND: ClassVar[str] = CLASSIFY
    REFERENCE: ClassVar[str] = CLASSIFY_REFERENCE
    DERIVED: ClassVar[tuple[str, ...]] = ("median_ms", "ms_per_sample", "size_mb", "accuracy_drop", "compression")

    dataset: str | None = None
    classes: list[str] = field(default_factory=list)
    train_rows: int | None = None
    eval_rows: int | None = None
    seq_len: int | None = None
    batch_size: int | None = None
    accuracy: float | None = None
    precision_macro: float | None = None
    recall_macro: float | None = None
    f1_macro: float | None = None
    confusion_matrix: list[list[int]] = field(default_factory=list)

    @property
    def shape(self) -> tuple:
        return (self.batch_size,)

    @property
    def ms_per_sample(self) -> float | None:
        return self.median_ms / self.batch_size if self.median_ms and self.batch_size else None

    @property
    def accuracy_drop(self) -> float | None:
        """Accuracy points below the reference classifier's."""
        base = self.reference_values.get("accuracy")
        return None if base is None or self.accuracy is None else 100 * (base - self.accuracy)

    @property
    def compression(self) -> float | None:
        return 1 / self.ratios["size"] if self.ratios.get("size") else None


# Every kind's record class, by kind: the built-in ones here, a plugin's added by `kinds.register_kind`. Reading
# records (the history, compare, reports) needs only this, never the measurement code of a kind.
RECORDS: dict[str, type[Record]] = {cls.KIND: cls for cls in (ForwardRecord, GenerateRecord, TrainRecord,
                                                               ClassifyRecord)}
REQUIRED = ("variant", "device")


def _from_v1(info: dict) -> dict:
    """The release before typed records: no schema, forward rows without `kind`, ratios under other names.
    Its ratios are dropped and recomputed (unpaired: v1 did not alternate rounds) by `Run.fill_ratios`."""
    info = {k: v for k, v in info.items() if k != "ratios"}
    info.setdefault("kind", FORWARD)
    if info["kind"] == GENERATE:  # v1 stored no per-round decode tokens/s: only its mean over all rounds
        info.setdefault("decode_tokens_per_s_samples", [])
    return info


def from_extra_info(info: dict, where: str) -> Record:
    """The record a row's `extra_info` holds; `where` (file and row) names it in every error."""
    schema = info.get("schema", 1)
    if not isinstance(schema, int) or schema > SCHEMA:
        raise RecordError(f"{where}: written with result schema {schema!r}, newer than this gpt2compress reads "
                          f"(≤ {SCHEMA}): upgrade gpt2compress (pip install -U gpt2compress) to read it")
    if schema == 1:
        info = _from_v1(info)
    kind = info.get("kind")
    if kind not in RECORDS:  # a plugin's kind is known once its module is imported
        raise RecordError(f"{where}: unknown result kind {kind!r}; known kinds: {', '.join(RECORDS)} (a plugin's "
                          "kind: import its module first)")
    cls = RECORDS[kind]
    absent = [key for key in REQUIRED if not info.get(key)]
    if absent:
        raise RecordError(f"{where}: a {kind} row without {', '.join(absent)}: not written by `pytest bench/`")
    known = {f.name for f in fields(cls)} - {"extra"}
    ignored = set(cls.DERIVED) | {"schema", "kind"}
    values = {k: v for k, v in info.items() if k in known}
    extra = {**info.get("extra", {}), **{k: v for k, v in info.items() if k not in known and k not in ignored}}
    values.pop("ratios", None)  # derived below from the reference's values and rounds
    return cls(**values, extra=extra).derive_ratios()
