"""Fine-tuning with `transformers.Trainer`: recovers quality lost to pruning (seed 000, part 3).

The same loop pretrains the embedded `tiny` model. Padding is masked out of the
loss (labels = -100 on padding), the pad token is set on the tokenizer upstream,
and Trainer's progress bar shows the work.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import (PreTrainedModel, Trainer, TrainerCallback, TrainerState, TrainingArguments,
                          default_data_collator)

from ..data import Windows
from ...core.progress import Steps
from ...core.registry import CPU, CUDA, register_stage

if TYPE_CHECKING:
    from ...core.variants import Context

TRAINING_LIBRARIES = ("accelerate", "datasets")  # Trainer's loop and the dataset it reads


@dataclass(frozen=True)
class FinetuneConfig:
    data: Windows
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    learning_rate: float = 5e-5
    batch_size: int = 8
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    seed: int = 0
    show_progress: bool = field(default=True, metadata={"hash": False})


def _dataset(windows: Windows):
    import datasets

    ds = datasets.Dataset.from_dict(
        {
            "input_ids": windows.input_ids.tolist(),
            "attention_mask": windows.attention_mask.tolist(),
            "labels": windows.labels.tolist(),
        }
    )
    return ds.with_format("torch")


def run_trainer(model: PreTrainedModel, config: FinetuneConfig, trainer_class: type[Trainer] = Trainer,
                save_steps: int = 0, output_dir: str | None = None, **trainer_kwargs) -> tuple[TrainerState, list[int]]:
    """Train `model` in place on `config.data`; every stage that trains (finetune, distill, lora) goes through here.

    `save_steps` > 0 writes a Trainer checkpoint that often, into `output_dir` (a temporary
    directory unless given: the cache keeps the final model, not the trail). Returns the
    trainer state (log history) and the steps that were checkpointed."""
    if not 0 < config.epochs <= 5 and config.max_steps <= 0:
        raise ValueError(f"fine-tuning runs up to 5 epochs (seed 000), got epochs={config.epochs}: pass "
                         "--finetune-epochs in (0, 5] or --finetune-steps N")
    use_cpu = next(model.parameters()).device.type == "cpu"
    with tempfile.TemporaryDirectory(prefix="gpt2compress-trainer-") as tmp:
        out = Path(output_dir or tmp)
        args = TrainingArguments(
            output_dir=str(out),
            num_train_epochs=config.epochs,
            max_steps=config.max_steps,
            learning_rate=config.learning_rate,
            per_device_train_batch_size=config.batch_size,
            warmup_steps=config.warmup_ratio,
            weight_decay=config.weight_decay,
            lr_scheduler_type="cosine",
            logging_steps=50,
            save_strategy="steps" if save_steps > 0 else "no",
            save_steps=max(save_steps, 1),
            report_to=[],
            seed=config.seed,
            data_seed=config.seed,
            use_cpu=use_cpu,
            fp16=not use_cpu and model.dtype == torch.float32,
            dataloader_num_workers=0,
            disable_tqdm=not config.show_progress,
        )
        use_cache = getattr(model.config, "use_cache", None)
        model.train()
        trainer = trainer_class(model=model, args=args, train_dataset=_dataset(config.data),
                                data_collator=default_data_collator, **trainer_kwargs)
        trainer.add_callback(StepsCallback())
        trainer.train()
        checkpoints = sorted(int(p.name.rsplit("-", 1)[1]) for p in out.glob("checkpoint-*"))
    if use_cache is not None:  # Trainer turns the KV cache off for training; generate and exports need it back
        model.config.use_cache = use_cache
    model.eval()
    return trainer.state, checkpoints


class StepsCallback(TrainerCallback):
    """Trainer's steps as progress lines (its own tqdm bar is captured under pytest)."""

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self.steps = Steps("training (Trainer)", state.max_steps)

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.steps.update(state.global_step)


def steps_per_epoch(config: FinetuneConfig) -> int:
    return math.ceil(len(config.data) / config.batch_size)


def training_config(ctx: Context, learning_rate: float) -> FinetuneConfig:
    """Every training stage (finetune, distill, lora): the run's fine-tuning data and budget."""
    s = ctx.settings
    return FinetuneConfig(ctx.train, epochs=s.finetune_epochs, max_steps=s.finetune_max_steps,
                          learning_rate=learning_rate)


@register_stage("finetune", lambda ctx: training_config(ctx, ctx.settings.finetune_lr), devices=(CPU, CUDA),
                trains=True, libraries=TRAINING_LIBRARIES, about="recover quality with transformers.Trainer")
def finetune(model: PreTrainedModel, config: FinetuneConfig) -> PreTrainedModel:
    run_trainer(model, config)
    return model.eval()
