"""Training throughput (seed 003): tokens/s of full optimizer steps, by precision and attention kernel.

One step = forward + backward over enough micro-batches to reach the effective
batch (in tokens) by gradient accumulation, then the optimizer update. Precision
is autocast over fp32 master weights: bf16 (CPUs with AVX-512 BF16/AMX, Ampere+
GPUs) or fp16 with a GradScaler (T4). The same few micro-batches repeat every
step, so the loss must fall: a benchmark of a step that does not learn is
worthless, and `TrainResult.learned` says whether it did.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from ..build.data import Windows
from .timing import model_device, synchronizer
from .memory import peak_memory, release_memory, tensor_bytes
from ..core.progress import track
from ..build.stages.precision import DTYPES


@dataclass(frozen=True)
class TrainSetup:
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 adds a GradScaler)
    attention: str = "sdpa"
    tokens_per_step: int = 4096
    micro_batch: int = 4
    steps: int = 5
    warmup_steps: int = 1
    learning_rate: float = 1e-3
    lora_rank: int = 0  # > 0: the model is frozen and LoRA adapters of this rank train (seed 001)


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    step_s: list[float] = field(default_factory=list)
    tokens_per_step: int = 0
    accumulation: int = 0
    peak_memory_bytes: int = 0
    peak_memory_reserved_bytes: int | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step * len(self.step_s) / sum(self.step_s)

    @property
    def learned(self) -> bool:
        """The last step's loss is below the first one's, and every loss is finite."""
        return all(math.isfinite(x) for x in self.losses) and self.losses[-1] < self.losses[0]


def accumulation_steps(setup: TrainSetup, seq_len: int) -> int:
    """Micro-batches per optimizer step so that micro_batch × seq_len × steps ≥ tokens_per_step."""
    return max(1, math.ceil(setup.tokens_per_step / (setup.micro_batch * seq_len)))


def _micro_batches(windows: Windows, setup: TrainSetup, count: int) -> list[dict[str, torch.Tensor]]:
    needed = setup.micro_batch * count
    if len(windows) < needed:
        raise ValueError(f"training needs {needed} windows ({count} micro-batches of {setup.micro_batch}); "
                         f"only {len(windows)} available: lower --train-tokens or --train-micro-batch")
    return [{**b, "labels": b["input_ids"].masked_fill(b["attention_mask"] == 0, -100)}
            for b in windows.head(needed).batches(setup.micro_batch)]


def train_steps(model: torch.nn.Module, windows: Windows, setup: TrainSetup, progress: bool = True) -> TrainResult:
    """Run `warmup_steps + steps` optimizer steps; time and record the last `steps`."""
    if setup.lora_rank:
        from ..build.stages.lora import AdapterSpec, with_adapters

        model = with_adapters(model, AdapterSpec(rank=setup.lora_rank))
    device = model_device(model)
    accumulation = accumulation_steps(setup, windows.input_ids.shape[1])
    batches = [{k: v.to(device) for k, v in b.items()} for b in _micro_batches(windows, setup, accumulation)]
    half = None if setup.precision == "fp32" else DTYPES[setup.precision]
    autocast = (lambda: torch.autocast(device.type, dtype=half)) if half else nullcontext
    scaler = torch.amp.GradScaler(device.type, enabled=setup.precision == "fp16")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=setup.learning_rate)
    sync = synchronizer(device)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    result = TrainResult(tokens_per_step=tokens, accumulation=accumulation)
    model.set_attn_implementation(setup.attention)
    model.train()
    release_memory()  # what earlier work freed is not this training's peak
    with peak_memory(device) as mem:
        for step in track(range(setup.warmup_steps + setup.steps), "train steps", bar=progress):
            sync()
            start, total = time.perf_counter(), 0.0
            for batch in batches:
                with autocast():
                    loss = model(**batch).loss / accumulation
                scaler.scale(loss).backward()
                total += loss.item()
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            sync()
            if step >= setup.warmup_steps:
                result.step_s.append(time.perf_counter() - start)
                result.losses.append(total)
    model.eval()
    if device.type == "cuda":  # the allocator's peak: the weights and everything training added
        result.peak_memory_bytes, result.peak_memory_reserved_bytes = mem.peak, mem.reserved
    else:  # this process's RSS holds the whole session: the weights plus what training added to the RSS
        result.peak_memory_bytes = tensor_bytes(model) + mem.increase
    return result
