"""AG News classification (seed 004): does a compressed model keep its task accuracy?

The source LM's transformer becomes a `GPT2ForSequenceClassification` (a fresh
linear `score` head on the last real token), fine-tuned with the same `Trainer`
stage the LM variants use, then compressed by the same stages. A classification
variant is a named chain, like an LM variant, whose first stage is that fine-tune,
so every quantized classifier starts from the identical fp32 classifier.

Data: a directory holding AG News `test.csv` (+ `classes.txt`), e.g.
../shared/data/ag_news, split into train/eval with a fixed seed, stratified by
class; or the hub's `ag_news` (its own train and test splits) when online.
Padding is on the right and `config.pad_token_id` is set, so pooling takes the
last non-padding token, not a pad.
"""

from __future__ import annotations

import copy
import csv
import os
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import GPT2ForSequenceClassification

from ..core.cache import content_key, text_key
from ..core.fingerprint import fingerprint
from ..build.data import DataSourceError, Windows, _encode, _pad, tokenizer_key
from .timing import model_device
from ..core.progress import track
from ..build.sources import GPT2_RANDOM, TINY, Source, parent_of
from ..core.records import CLASSIFY_REFERENCE
from ..core.variants import Context, Settings

AGNEWS_ENV = "GPT2COMPRESS_AGNEWS"
HUB_AGNEWS = "ag_news"
AGNEWS_CLASSES = ("World", "Sports", "Business", "Sci/Tech")
CLASSIFY_BASELINE = CLASSIFY_REFERENCE  # the classifier every classify ratio divides by

# Every chain starts with the fine-tune: the fp32 classifier every ratio divides by.
CLASSIFY_VARIANTS: dict[str, tuple[str, ...]] = {
    CLASSIFY_BASELINE: ("finetune",),
    "cls-bf16": ("finetune", "bf16"),
    "cls-fp16": ("finetune", "fp16"),
    "cls-int8-scratch": ("finetune", "int8_scratch"),
    "cls-ov-fp32": ("finetune", "openvino"),
    "cls-ov-int8-weights": ("finetune", "openvino", "ov_int8_weights"),
    "cls-ov-int8-static": ("finetune", "openvino", "ov_int8_static"),
    "cls-inc-int8": ("finetune", "inc_int8"),
    "cls-bnb-int8": ("finetune", "bnb_int8"),
    "cls-bnb-nf4": ("finetune", "bnb_nf4"),
}


@dataclass(frozen=True)
class Split:
    texts: tuple[str, ...]
    labels: tuple[int, ...]  # 0-based class ids


@dataclass(frozen=True)
class News:
    """A labelled text-classification dataset, already split into train and eval."""

    name: str
    classes: tuple[str, ...]
    train: Split
    eval: Split

    @cached_property
    def cache_key(self) -> str:
        return f"{self.name}:{text_key(repr((self.classes, self.train, self.eval)))}"


def load_ag_news(spec: str | os.PathLike | None = None, eval_fraction: float = 0.1, seed: int = 0) -> News:
    """`spec`: a directory with test.csv, or `ag_news` (hub); None -> `$GPT2COMPRESS_AGNEWS`, else the hub."""
    spec = str(spec or os.environ.get(AGNEWS_ENV) or HUB_AGNEWS)
    if spec == HUB_AGNEWS:
        return _hub_ag_news()
    return _csv_ag_news(Path(spec).expanduser(), eval_fraction, seed)


def _hub_ag_news() -> News:
    try:
        import datasets

        ds = datasets.load_dataset(HUB_AGNEWS)
    except Exception as exc:  # offline, no cache: the hub's error says little about the fix
        raise DataSourceError(
            f"cannot load AG News from the hub ({type(exc).__name__}); offline, pass --agnews DIR (or set "
            f"${AGNEWS_ENV}): a directory with AG News test.csv (label,title,description) and classes.txt, "
            "e.g. ../shared/data/ag_news") from exc
    split = lambda d: Split(tuple(d["text"]), tuple(d["label"]))  # noqa: E731
    return News(HUB_AGNEWS, tuple(ds["train"].features["label"].names), split(ds["train"]), split(ds["test"]))


def _read_rows(csv_path: Path) -> tuple[list[str], list[int]]:
    """Rows of `label,title,description` (labels 1-4); a header row is skipped. Text = title + description."""
    texts, labels = [], []
    with csv_path.open(newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if not row or row[0].strip().lower() == "label":
                continue
            if len(row) < 3 or not row[0].strip().isdigit():
                raise DataSourceError(f"{csv_path}: expected rows `label,title,description` with labels 1-4, "
                                      f"got {row[:3]!r}")
            texts.append(f"{row[1]}. {row[2]}".replace("\\", " "))  # AG News escapes line breaks as backslashes
            labels.append(int(row[0]) - 1)
    return texts, labels


def _csv_ag_news(path: Path, eval_fraction: float, seed: int) -> News:
    from sklearn.model_selection import train_test_split

    csv_path = path / "test.csv" if path.is_dir() else path
    if not csv_path.is_file():
        raise DataSourceError(f"AG News not found at {path}: pass --agnews DIR (or set ${AGNEWS_ENV}) to a "
                              f"directory with test.csv and classes.txt, or `{HUB_AGNEWS}` for the hub")
    texts, labels = _read_rows(csv_path)
    classes_file = csv_path.with_name("classes.txt")
    classes = tuple(c.strip() for c in classes_file.read_text().splitlines() if c.strip()) if classes_file.is_file() \
        else AGNEWS_CLASSES
    if not labels or min(labels) < 0 or max(labels) >= len(classes):
        raise DataSourceError(f"{csv_path}: labels must be 1..{len(classes)} (one per line of classes.txt)")
    train_x, eval_x, train_y, eval_y = train_test_split(texts, labels, test_size=eval_fraction, stratify=labels,
                                                        random_state=seed)
    return News(f"{csv_path.parent.name}/{csv_path.name}", classes, Split(tuple(train_x), tuple(train_y)),
                Split(tuple(eval_x), tuple(eval_y)))


@dataclass(frozen=True)
class LabelledWindows(Windows):
    """Token windows whose `labels` are class ids, so `stages.finetune` trains a classifier unchanged."""

    targets: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))

    @property
    def labels(self) -> torch.Tensor:
        return self.targets


def encode(split: Split, tokenizer, seq_len: int, max_samples: int | None, name: str) -> LabelledWindows:
    """The first `max_samples` rows (the split is already shuffled and stratified), truncated, right-padded."""
    texts, labels = split.texts[:max_samples], split.labels[:max_samples]
    ids, mask = _pad(_encode(tokenizer, list(texts)), seq_len, tokenizer.pad_token_id)
    key = content_key("classify", name, tokenizer_key(tokenizer), seq_len, max_samples)
    return LabelledWindows(ids, mask, key, torch.tensor(labels, dtype=torch.long))


def classify_settings(model: str, **overrides: Any) -> Settings:
    """Short texts (64 tokens hold most of a headline + lead), 2,048 fine-tuning rows: ~2 minutes cold on 2 CPU
    cores. The smoke run uses them too: with fewer rows `tiny`'s classifier stays at chance, and accuracy budgets
    between chance-level classifiers gate noise."""
    lr = {TINY: 1e-3, GPT2_RANDOM: 5e-4}.get(parent_of(model), 2e-5)
    base = Settings(seq_len=64, eval_samples=760, finetune_samples=2048, finetune_lr=lr, calibration_samples=32)
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def classifier_source(lm: Source, classes: tuple[str, ...], seed: int = 0) -> Source:
    """The LM's transformer under a fresh, seeded `score` head; pooling skips right padding via pad_token_id."""
    config = copy.deepcopy(lm.model.config)
    config.num_labels, config.pad_token_id = len(classes), lm.tokenizer.pad_token_id
    config.id2label = dict(enumerate(classes))
    config.label2id = {c: i for i, c in enumerate(classes)}
    config.architectures = [GPT2ForSequenceClassification.__name__]
    torch.manual_seed(seed)
    model = GPT2ForSequenceClassification(config)
    model.transformer.load_state_dict(lm.model.transformer.state_dict())
    key = content_key("classifier", lm.key, classes, seed, fingerprint((__name__,), ("torch", "transformers")))
    return Source(f"{lm.name}-classifier", model.eval(), lm.tokenizer, key, lm.perplexity_meaningful)


@dataclass
class ClassifyContext(Context):
    """A `Context` whose train / eval / calibration windows are AG News rows: the stages read them unchanged."""

    news: News | None = None

    def _split(self, split: Split, n: int | None, name: str) -> LabelledWindows:
        return encode(split, self.source.tokenizer, self.settings.seq_len, n, f"{self.news.cache_key}:{name}")

    @cached_property
    def train(self) -> LabelledWindows:
        return self._split(self.news.train, self.settings.finetune_samples or None, "train")  # 0: every row

    @cached_property
    def eval(self) -> LabelledWindows:
        return self._split(self.news.eval, self.settings.eval_samples, "eval")

    @cached_property
    def calibration(self) -> LabelledWindows:
        return self._split(self.news.train, self.settings.calibration_samples, "train")


def classify_context(lm: Source, news: News, settings: Settings, corpus, device: str = "cpu",
                     spec: Any = None) -> ClassifyContext:
    """`spec`: the LM's ContextSpec, so records name the model as the user did."""
    return ClassifyContext(classifier_source(lm, news.classes), corpus, settings, device, spec, news=news)


@torch.inference_mode()
def predict(model: Any, windows: Windows, batch_size: int = 32) -> np.ndarray:
    """Class ids from any model called as `model(input_ids=, attention_mask=).logits` (torch, OpenVINO, INC)."""
    device = model_device(model)
    preds = [model(**{k: v.to(device) for k, v in batch.items()}).logits.argmax(-1).cpu()
             for batch in track(list(windows.batches(batch_size)), "classify eval", bar=False)]
    return torch.cat(preds).numpy()


def classification_metrics(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> dict[str, Any]:
    """Accuracy, macro precision / recall / F1 (every class weighs the same) and the confusion matrix (rows: true)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    precision, recall, f1, _ = precision_recall_fscore_support(labels, preds, labels=range(n_classes),
                                                               average="macro", zero_division=0)
    return {"accuracy": float(accuracy_score(labels, preds)), "precision_macro": float(precision),
            "recall_macro": float(recall), "f1_macro": float(f1),
            "confusion_matrix": confusion_matrix(labels, preds, labels=range(n_classes)).tolist()}


def evaluate(model: Any, windows: LabelledWindows, n_classes: int) -> dict[str, Any]:
    return {**classification_metrics(windows.targets.numpy(), predict(model, windows), n_classes),
            "eval_rows": len(windows)}
