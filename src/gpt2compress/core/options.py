"""Options, declared once: `pytest bench/` and `gpt2compress pipeline` read the same flags with the same
defaults and help. `cli=True` marks the ones the pipeline command takes too."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any, Callable


def count(text: str, least: int = 1) -> int:
    """A whole number of rounds, tokens or sequences: argparse names the flag when it is not one."""
    value = int(text) if text.strip().removeprefix("-").isdigit() else None
    if value is None or value < least:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ {least}, got {text!r}")
    return value


def counts(text: str) -> list[int]:
    """Comma-separated counts: "1,8"."""
    return [count(part) for part in text.split(",")]


GENERATION_LOOPS = ("genai", "optimum")
MEMORY_PROBE_ENV, GENAI_ENV = "GPT2COMPRESS_MEMORY_PROBE", "GPT2COMPRESS_GENAI"  # CI's defaults, read once here


EVAL_PROTOCOLS = ("windows", "documents")


def eval_protocol(text: str) -> str:
    if text not in EVAL_PROTOCOLS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(EVAL_PROTOCOLS)}, got {text!r}")
    return text


def generation_loop(text: str) -> str:
    if text not in GENERATION_LOOPS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(GENERATION_LOOPS)}, got {text!r}")
    return text


@dataclass(frozen=True)
class Option:
    flag: str
    help: str
    default: Any = None
    type: Any = None
    action: str | None = None
    metavar: str | None = None
    cli: bool = False

    def kwargs(self) -> dict[str, Any]:
        out = {"default": self.default, "help": self.help}
        if self.action:
            return {**out, "action": self.action}
        return {**out, **({"type": self.type} if self.type else {}),
                **({"metavar": self.metavar} if self.metavar else {})}


OPTIONS: tuple[Option, ...] = (
    Option("--model", "tiny (default) | gpt2-random | hub id | local checkpoint dir", "tiny", cli=True),
    Option("--data", "embedded (default) | wikitext2 (hub) | a WikiText-2 dir; env GPT2COMPRESS_DATA", cli=True),
    Option("--tokenizer", "tokenizer dir or hub id for gpt2-random", cli=True),
    Option("--devices", "auto (every device: a CPU runner reports the CUDA cases skipped) | cpu | cuda | cpu,cuda",
           "auto", cli=True),
    Option("--seq-len", "tokens per window (default 128)", type=count, cli=True),
    Option("--eval-protocol", "perplexity by windows (default: one 128-token window per paragraph, padding masked) "
           "| documents (lm-eval-harness's wikitext: whole articles in rolling windows; word / byte perplexity, bits "
           "per byte); every row names its protocol and the gate never compares two", type=eval_protocol,
           metavar="PROTOCOL", cli=True),
    Option("--eval-samples", "eval windows for perplexity (default: all; gpt2-random: 32; the bench's smoke and "
           "tiers set their own)", type=count, cli=True),
    Option("--finetune-steps", "optimizer steps of every training stage (finetune, distill, lora); default: one epoch "
           "(gpt2-random: 8; -1: full epochs)", type=int, cli=True),
    Option("--finetune-epochs", "epochs of every training stage (default 1; seed 000 runs 1-5)", type=float, cli=True),
    Option("--prune-fraction", "share of each layer's attention heads the prune stage removes (default 0.2)",
           type=float, cli=True),
    Option("--lora-targets", "comma-separated GPT-2 modules LoRA adapts (default c_attn,c_proj,c_fc)", cli=True),
    Option("--rounds", "forward: timed rounds, each paired with the reference's (default 20; seed 002: 100)", 20,
           type=count, cli=True),
    Option("--warmup", "forward: untimed warm-up rounds before them (default 3; seed 002: 10)", 3,
           type=lambda text: count(text, least=0)),
    Option("--cycle-inputs", "forward: each round times the next eval window(s) instead of the first every time "
                             "(seed 002)", False, action="store_true"),
    Option("--cls-seq-len", "classify: tokens per AG News text (default 64; seed 004: 128)", type=count),
    Option("--cls-epochs", "classify: fine-tuning epochs of the classifier (default 1; seed 004: 3)", type=float),
    Option("--cls-train-rows", "classify: training rows (default 2048; 0: the whole train split, as seed 004)",
           type=int),
    Option("--shard", "I/N: this runner's share of the selected cases, N runners of one class splitting them "
                      "(balanced by the times of the latest recorded run; the history merges the shards)",
           metavar="I/N"),
    Option("--budgets", "budgets TOML (default bench/budgets.toml)"),
    Option("--stages", "comma-separated variants to run (default: all)"),
    Option("--batch-size", "batch of the timed forward (default 1)", 1, type=count),
    Option("--traces", "torch.profiler traces (OpenVINO: its per-layer counters) per stage here", metavar="DIR"),
    Option("--memray-captures", "memray captures per stage here", metavar="DIR"),
    Option("--smoke", "only the fast smoke selection (what CI runs)", False, action="store_true"),
    Option("--tier", "tour (the default without --smoke or --stages: the walk-through, each INT8 path, two train "
           "setups, three classifiers) | pr (forward + b1 generate of the shipped variants, a perplexity subset) | "
           "nightly (every case)",
           metavar="TIER"),
    Option("--journal", "append every record here the moment it is measured (default: the --benchmark-json path "
                        "with .jsonl); survives a crash that loses the JSON", metavar="PATH"),
    Option("--prompt-len", "generate: prompt tokens (default 128, fewer if the model's context is shorter)", type=int),
    Option("--new-tokens", "generate: tokens generated (default 64)", 64, type=count),
    Option("--gen-batch-sizes", "generate: comma-separated batch sizes (default 1,8)", "1,8", type=counts),
    Option("--gen-rounds", "generate: timed rounds, each paired with the reference's (default 3)", 3, type=count),
    Option("--train-tokens", "train: effective batch per optimizer step in tokens, reached by gradient accumulation",
           4096, type=int),
    Option("--train-micro-batch", "train: sequences per micro-batch (default 4)", 4, type=int),
    Option("--train-steps", "train: timed optimizer steps (default 5)", 5, type=count),
    Option("--agnews", "classify: AG News dir with test.csv + classes.txt, or ag_news (hub); env GPT2COMPRESS_AGNEWS",
           metavar="DIR"),
    Option("--hellaswag", "forward: also score HellaSwag (a jsonl file, or hellaswag for the hub's validation set)",
           metavar="PATH"),
    Option("--hellaswag-samples", "hellaswag: first N examples (default: all)", type=int),
    Option("--no-memory-probe", "CPU forward cases: skip the fresh-process peak-memory probe (a process start per "
           f"case); env {MEMORY_PROBE_ENV}=0 sets this default", os.environ.get(MEMORY_PROBE_ENV) == "0",
           action="store_true"),
    Option("--progress-every", "seconds between two progress lines of one loop (default 15; 0: every step)", 15.0,
           type=float, metavar="SECONDS"),
    Option("--emulated-bf16", "measure bf16 on a CPU without native bf16 too (emulated: slower than fp32; default: "
           "skipped, naming why)", False, action="store_true"),
    Option("--ov-generate", "how an OpenVINO LM generates: genai (openvino-genai's LLMPipeline, the loop OpenVINO "
           f"deploys) | optimum (optimum-intel's generate); env {GENAI_ENV}=0 sets optimum as the default",
           "optimum" if os.environ.get(GENAI_ENV) == "0" else "genai", type=generation_loop, metavar="LOOP"),
)


def settings_overrides(opt: Callable[[str], Any]) -> dict[str, Any]:
    """The options that change what is built, as `Settings` fields (None: the model's default). `opt` reads one."""
    targets = opt("--lora-targets")
    return {"seq_len": opt("--seq-len"), "eval_samples": opt("--eval-samples"), "eval_protocol": opt("--eval-protocol"),
            "finetune_max_steps": opt("--finetune-steps"), "finetune_epochs": opt("--finetune-epochs"),
            "prune_fraction": opt("--prune-fraction"),
            "lora_targets": tuple(t.strip() for t in targets.split(",") if t.strip()) if targets else None}


def classify_overrides(opt: Callable[[str], Any]) -> dict[str, Any]:
    """The classification recipe's options as `Settings` fields of the classifier's context."""
    return {"seq_len": opt("--cls-seq-len"), "finetune_epochs": opt("--cls-epochs"),
            "finetune_samples": opt("--cls-train-rows")}  # 0: the whole train split


def add_pytest_options(group: Any) -> None:
    for option in OPTIONS:
        group.addoption(option.flag, **option.kwargs())


def add_cli_options(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    for option in OPTIONS:
        if option.cli and (only is None or option.flag in only):
            parser.add_argument(option.flag, **option.kwargs())


def resolve_devices(wanted: str, cuda_available: bool) -> list[str]:
    """`auto` lists cuda even without a GPU (the bench then reports every CUDA case as skipped, with the reason)."""
    if wanted == "auto":
        return ["cpu", "cuda"]
    chosen = wanted.split(",")
    unknown = [d for d in chosen if d not in ("cpu", "cuda")]
    if unknown:
        raise ValueError(f"--devices: unknown {unknown}; use auto, cpu, cuda or cpu,cuda")
    if "cuda" in chosen and not cuda_available:
        raise ValueError(f"--devices cuda: {NO_GPU}; use --devices cpu (or auto)")
    return chosen


NO_GPU = "no CUDA GPU visible (torch.cuda.is_available() is False): the CUDA cases run on the T4 runners"
