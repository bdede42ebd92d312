"""`gpt2compress pipeline`, `variants` and `cores`: what is built, and where it runs."""

from __future__ import annotations

import argparse
import json

from ..core.options import add_cli_options

# torch, transformers and the stages load only in the commands that build models: `history gate` answers in
# seconds on a CI runner.
WALKTHROUGH = ("fp32", "pruned", "pruned-finetuned", "pruned-finetuned-ov-int8-static")


def pipeline(args: argparse.Namespace) -> int:
    import torch

    from ..build import sources
    from ..core.cache import apply_cap
    from ..build.data import load_corpus
    from ..core.options import resolve_devices
    from ..core.variants import VARIANTS

    unknown = [name for name in args.variants.split(",") if name not in VARIANTS]
    if unknown:  # before minutes of loading and building: a typo must not cost the rows before it
        raise ValueError(f"--variants: unknown {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    corpus = load_corpus(args.data)
    source = sources.load_source(args.model, corpus, args.tokenizer)
    rows: list[dict] = []
    try:
        for device in resolve_devices(args.devices, torch.cuda.is_available()):
            if device == "cuda" and not torch.cuda.is_available():
                continue  # auto: the CPU only, on a machine without a GPU
            _pipeline_rows(args, source, corpus, device, rows)
    finally:  # the rows measured before a failure are kept
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"model": args.model, "data": corpus.name, "rows": rows}, f, indent=2)
    capped = apply_cap()
    if capped:
        print(capped)
    return 0


def _pipeline_rows(args: argparse.Namespace, source, corpus, device: str, rows: list[dict]) -> None:
    """Appends each variant's row to `rows` as it is measured."""
    from ..core.registry import scoring_engine
    from ..measure.fields import footprint, quality, speed
    from ..measure.timing import fixed_batch
    from ..core.options import settings_overrides
    from ..build.stages import StageNotApplicable
    from ..core.variants import Context, ContextSpec, Settings, build

    option = vars(args)
    settings = Settings.for_model(args.model, **settings_overrides(lambda flag: option[flag[2:].replace("-", "_")]))
    spec = ContextSpec(args.model, args.data, args.tokenizer, settings, device)
    ctx = Context(source, corpus, settings, device, spec)
    batch = fixed_batch(ctx.eval, 1, settings.seq_len)  # the b1 batch every variant is timed on
    print(f"{'variant':36} {'ppl':>9} {'size MB':>9} {'b1 ms':>9} {'p90 ms':>9} {'params':>11} heads/layer ({device})")
    for name in args.variants.split(","):
        try:
            built = build(name, ctx)
        except StageNotApplicable as reason:
            print(f"{name:36} skipped: {reason}")
            continue
        model = scoring_engine(built, batch)  # as the bench scores it (an OpenVINO LM: its stateless IR)
        row = {"variant": name, "device": device, **footprint(built), **quality(built, model, ctx),
               **speed(model, batch, ctx.device, rounds=args.rounds)}
        rows.append(row)
        ppl = f"{row['perplexity']:9.2f}" + ("" if row["perplexity_meaningful"] else "*")
        print(f"{name:36} {ppl:>9} {row['size_on_disk_bytes'] / 1e6:9.2f} {row['mean_ms']:9.2f} "
              f"{row['p90_ms']:9.2f} {row['parameters']:11,} {row['heads_per_layer']}", flush=True)
    if not source.perplexity_meaningful:
        print("* random weights: perplexity is not meaningful")


def variants(args: argparse.Namespace) -> int:
    """What `--stages` can name, read from the case matrix and the stage registry (the bench's own answers)."""
    from ..core.cases import cases
    from ..core.options import resolve_devices
    from ..core.registry import STAGES

    for device in resolve_devices(args.devices, cuda_available=True):  # a listing runs nothing: cuda is listable
        rows: dict[str, tuple[list[str], str, str]] = {}
        for case in cases():
            kinds = rows.get(case.variant, ([], "", ""))[0] + [case.kind]
            why_not = case.unsupported(device)
            rows[case.variant] = (kinds, _chain_text(case), "yes" if why_not is None
                                  else "no: " + why_not.removeprefix(f"{case.variant}: "))
        width = max(len(chain) for _, chain, _ in rows.values())
        print(f"{'name':34} {'measures':26} {'chain':{width}} runs on {device}")
        for name, (kinds, chain, here) in rows.items():
            print(f"{name:34} {', '.join(kinds):26} {chain:{width}} {here}")
        print()
    print(f"{'stage':22} {'devices':10} what it does")
    for stage in sorted(STAGES.values(), key=lambda s: s.name):
        print(f"{stage.name:22} {','.join(stage.devices):10} {stage.about}")
    return 0


def _chain_text(case) -> str:
    """The stages that build the model, and for a train case what its training setup changes."""
    from dataclasses import fields

    text = " > ".join(case.chain) or "source"
    if case.setup is None:
        return text
    changed = [f"{f.name}={getattr(case.setup, f.name)}" for f in fields(case.setup)
               if getattr(case.setup, f.name) != f.default]
    return f"{text}, trained" + (f" with {', '.join(changed)}" if changed else "")


def cores(args: argparse.Namespace) -> int:
    from ..build.hardware import cpu_list, distinct_cores

    print(cpu_list(distinct_cores(args.n)))
    return 0




def add_commands(commands) -> None:
    run = commands.add_parser("pipeline", help="build variants and print their metrics")
    add_cli_options(run)
    run.add_argument("--variants", default=",".join(WALKTHROUGH),
                     help="comma-separated variant names (README lists them; an unknown one names the known)")
    run.add_argument("--json", default=None, help="also write the rows as JSON here")
    run.set_defaults(func=pipeline)
    listing = commands.add_parser("variants", help="what --stages can name, and whether each runs here")
    add_cli_options(listing, only=("--devices",))
    listing.set_defaults(func=variants)
    pin = commands.add_parser("cores", help="N CPUs on N distinct physical cores, as a list for taskset -c")
    pin.add_argument("n", type=int)
    pin.set_defaults(func=cores)
