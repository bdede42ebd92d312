"""Run a measurement in a child process, so native code that crashes costs one case, not the session.

An engine outside PyTorch whose native code has crashed here (llama.cpp) registers its runtime with
`isolated=True`. Their cases are built and measured in a fresh interpreter (spawned, not forked: a fork
of a process whose OpenMP pools are running can hang); a segfault there becomes that case's failure,
"crashed: signal 11 (SIGSEGV)", and the session goes on. While the child works, its progress lines reach this
process's sink as they are said; its build and measure times come home with its result (progress.py).
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import signal
import traceback
from typing import Any, Callable

from ..core import progress


class Crashed(RuntimeError):
    """The child process died without a result (a signal, or exit without reporting)."""


def run_isolated(fn: Callable[..., Any], *args: Any, modules: tuple[str, ...] = ()) -> Any:
    """`fn(*args)` in a spawned child; `modules` are imported there first (plugins that register stages).
    The child's exception is raised here; its death is `Crashed`."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(send, fn, args, modules, progress.has_sink(), progress.EVERY),
                            daemon=True)
    child.start()
    send.close()
    status, value = _answer(receive)  # before join: a large result must not block the child's exit
    child.join()
    if status == "ok":
        return value
    if status == "raise":
        raise value
    if status == "error":
        raise RuntimeError(f"in the isolated child process:\n{value}")
    raise Crashed(f"crashed: {death(child.exitcode)}")


def _answer(receive: Any) -> tuple[str | None, Any]:
    """The child's last word, relaying its progress lines until then; (None, None) if it died first."""
    try:
        while True:
            status, value, *tables = receive.recv()
            if status == "say":
                progress.relay(value)
                continue
            if tables:
                progress.absorb(tables[0])
            return status, value
    except EOFError:
        return None, None


def death(exitcode: int | None) -> str:
    """How a child process that sent no result ended: "signal 11 (SIGSEGV)", or its exit status."""
    if exitcode is not None and exitcode < 0:
        return f"signal {-exitcode} ({signal.Signals(-exitcode).name})"
    return f"the child process exited with status {exitcode} without a result"


def _child(send: Any, fn: Callable[..., Any], args: tuple, modules: tuple[str, ...], relay: bool,
           every: float) -> None:
    progress.EVERY = every
    try:
        with progress.report_to(lambda line: send.send(("say", line))) if relay else contextlib.nullcontext():
            for module in modules:
                importlib.import_module(module)
            result = fn(*args)
        send.send(("ok", result, progress.tables()))
    except Exception as err:  # noqa: BLE001 - reported to the parent, which raises it
        try:
            send.send(("raise", err, progress.tables()))
        except Exception:  # noqa: BLE001 - an exception that does not pickle travels as text
            send.send(("error", traceback.format_exc(), progress.tables()))
    finally:
        send.close()
