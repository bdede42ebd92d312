"""The bench suite's own settings. Its fixtures and hooks are the gpt2compress pytest plugin (`gpt2compress.suite`,
registered on install through the `pytest11` entry point); a test module here names the kind it measures (`KIND`)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def default_budgets() -> Path:
    """What every case is gated by when --budgets names no other file."""
    return Path(__file__).with_name("budgets.toml")
