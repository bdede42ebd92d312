"""Knowledge distillation (seed 001, stage 1): a shallower student learns the teacher's soft labels.

The student has the teacher's width and a subset of its blocks (every other one by
default, as DistilBERT/distilgpt2 do), initialised by copying those blocks, the
embeddings and the final LayerNorm, so it starts close to the teacher instead of
from noise. It trains with `transformers.Trainer` on

    alpha * T² * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * LM loss

(Hinton et al. 2015: T² keeps the soft-label gradients' scale as T changes), padding
masked out of both terms. The teacher runs in eval mode under no_grad. Like seed 001,
a checkpoint is written every `checkpoint_every` epochs (into a temporary directory
unless `checkpoint_dir` is given: the cache keeps the final student only).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from transformers import GPT2LMHeadModel, PreTrainedModel, Trainer

from ...runtimes.pytorch import notes, record, register_note
from ...core.registry import CPU, CUDA, register_stage
from .finetune import TRAINING_LIBRARIES, FinetuneConfig, run_trainer, steps_per_epoch, training_config

if TYPE_CHECKING:
    from ...core.variants import Context

UNSUPPORTED_TEACHER = ("pruned_heads", "int8_scratch")  # records whose blocks cannot be copied into a plain GPT-2


@dataclass(frozen=True)
class DistillConfig:
    train: FinetuneConfig
    keep_layers: tuple[int, ...] | None = None  # teacher blocks the student keeps; None: every other one
    temperature: float = 2.0
    alpha: float = 0.5  # weight of the soft-label term; 1 - alpha for the LM loss
    checkpoint_every: float = 1.0  # epochs between checkpoints; 0: none
    checkpoint_dir: str | None = field(default=None, metadata={"hash": False})


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """T² · KL(teacher_T || student_T), averaged over the real (mask = 1) tokens."""
    log_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(log_student, log_teacher, log_target=True, reduction="none").sum(-1)
    mask = mask.to(kl.dtype)
    return temperature**2 * (kl * mask).sum() / mask.sum().clamp_min(1)


def every_other_layer(n_layer: int) -> tuple[int, ...]:
    return tuple(range(0, n_layer, 2))


def _check_teacher(teacher: PreTrainedModel, keep: tuple[int, ...]) -> None:
    done = [k for k in UNSUPPORTED_TEACHER if notes(teacher.config).get(k)]
    if done:
        raise ValueError(f"distillation copies whole blocks into a plain GPT-2; this teacher was changed by "
                         f"{', '.join(done)}. Distil before pruning or quantizing (put `distill` first in the chain)")
    n = teacher.config.n_layer
    if not keep or len(set(keep)) != len(keep) or not all(0 <= i < n for i in keep):
        raise ValueError(f"keep_layers {keep} must name distinct teacher blocks in 0..{n - 1}")
    if len(keep) >= n:
        raise ValueError(f"keep_layers {keep} keeps all {n} teacher blocks: a student must be shallower")


def shallow_student(teacher: PreTrainedModel, keep_layers: tuple[int, ...]) -> GPT2LMHeadModel:
    """A GPT-2 of the teacher's width with `len(keep_layers)` blocks, copied from the teacher's."""
    keep = tuple(keep_layers)
    _check_teacher(teacher, keep)
    config = copy.deepcopy(teacher.config)
    config.n_layer = len(keep)
    source = {int(i): j for j, i in enumerate(keep)}
    state = {}
    for name, tensor in teacher.state_dict().items():
        if name.startswith("transformer.h."):
            layer, rest = name.removeprefix("transformer.h.").split(".", 1)
            if int(layer) not in source:
                continue
            name = f"transformer.h.{source[int(layer)]}.{rest}"
        state[name] = tensor.detach().clone()
    student = GPT2LMHeadModel(config).to(device=teacher.device, dtype=teacher.dtype)
    student.load_state_dict(state)  # strict: a block the student lacks or misses is an error
    return student


class DistillTrainer(Trainer):
    """Trainer whose loss mixes the teacher's soft labels with the LM loss."""

    def __init__(self, *args, teacher: PreTrainedModel, temperature: float, alpha: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher, self.temperature, self.alpha = teacher.eval(), temperature, alpha
        self.model_accepts_loss_kwargs = False  # the mix is averaged per real token, batch by batch

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        loss = mixed_loss(outputs, self.teacher, inputs, self.temperature, self.alpha)
        return (loss, outputs) if return_outputs else loss


def mixed_loss(student_out, teacher: PreTrainedModel, batch: dict[str, torch.Tensor], temperature: float,
               alpha: float) -> torch.Tensor:
    """alpha · soft-label loss + (1 - alpha) · LM loss; `student_out` came from a call with `labels`."""
    with torch.no_grad():
        teacher_logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    soft = distillation_loss(student_out.logits, teacher_logits, batch["attention_mask"], temperature)
    return alpha * soft + (1 - alpha) * student_out.loss


def distill_config(ctx: Context) -> DistillConfig:
    return DistillConfig(training_config(ctx, ctx.settings.finetune_lr), keep_layers=ctx.settings.distill_layers)


@register_stage("distill", distill_config, devices=(CPU, CUDA), trains=True, libraries=TRAINING_LIBRARIES,
                about="knowledge distillation into a shallower student initialised from the teacher's blocks")
def distill(teacher: PreTrainedModel, config: DistillConfig) -> PreTrainedModel:
    if not 0 <= config.alpha <= 1 or config.temperature <= 0:
        raise ValueError(f"distillation needs 0 ≤ alpha ≤ 1 and temperature > 0; got alpha={config.alpha}, "
                         f"temperature={config.temperature}")
    keep = config.keep_layers or every_other_layer(teacher.config.n_layer)
    student = shallow_student(teacher, keep)
    teacher.eval().requires_grad_(False)
    save_steps = round(config.checkpoint_every * steps_per_epoch(config.train))
    state, checkpoints = run_trainer(student, config.train, DistillTrainer, save_steps=save_steps,
                                     output_dir=config.checkpoint_dir, teacher=teacher,
                                     temperature=config.temperature, alpha=config.alpha)
    losses = [log["loss"] for log in state.log_history if "loss" in log]
    return record(student, "distill", {
        "teacher_layers": teacher.config.n_layer, "kept_layers": list(keep), "temperature": config.temperature,
        "alpha": config.alpha, "steps": state.global_step, "checkpoint_steps": checkpoints,
        "final_loss": losses[-1] if losses else None,
    })


register_note("distill")
