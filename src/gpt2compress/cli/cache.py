"""`gpt2compress cache ls | prune`: the build cache, listed and trimmed."""

from __future__ import annotations

import argparse


def cache_ls(args: argparse.Namespace) -> int:
    import time

    from ..core.cache import cache_root, entries, human

    listed = entries()
    print(f"{cache_root()}: {len(listed)} entries, {human(sum(e.size for e in listed))}")
    print(f"{'kind':10} {'size':>10} {'last used':>16} {'fingerprint':16} {'key':16} what")
    for e in reversed(listed):  # most recently used first
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used))
        print(f"{e.kind:10} {human(e.size):>10} {used:>16} {e.fingerprint or '-':16} {e.path.name:16} {e.label}")
    return 0


def cache_prune(args: argparse.Namespace) -> int:
    from ..core.cache import cache_root, entries, human, parse_size, prune

    if args.max_size is None and args.older_than is None:
        raise ValueError("cache prune needs --max-size SIZE (e.g. 20G) or --older-than DAYS (or both)")
    if args.older_than is not None and not args.older_than > 0:  # NaN too: a cutoff in the future removes everything
        raise ValueError(f"--older-than takes a number of days above 0 (e.g. 14); got {args.older_than}")
    limit = parse_size(args.max_size) if args.max_size is not None else None
    removed, busy = prune(max_size=limit, older_than_days=args.older_than)
    for e in removed:
        print(f"removed {e.kind}/{e.path.name} ({human(e.size)}) {e.label}")
    for e in busy:
        print(f"kept    {e.kind}/{e.path.name} ({human(e.size)}): in use by a running process")
    left = sum(e.size for e in entries())
    print(f"{cache_root()}: freed {human(sum(e.size for e in removed))}, {human(left)} left")
    return 0


def add_commands(commands) -> None:
    cache = commands.add_parser("cache", help="list or prune the build cache ($GPT2COMPRESS_CACHE)")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True)
    cache_commands.add_parser("ls", help="every entry, most recently used first").set_defaults(func=cache_ls)
    trim = cache_commands.add_parser("prune", help="remove least recently used entries")
    trim.add_argument("--max-size", default=None, metavar="SIZE", help="shrink the cache to this size: 500M, 20G")
    trim.add_argument("--older-than", type=float, default=None, metavar="DAYS", help="remove entries unused this long")
    trim.set_defaults(func=cache_prune)
