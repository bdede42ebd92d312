"""What an isolated case's child does for progress (run by test_progress.py through `run_isolated`): it says
step lines while it works and records a build and a measure, as a llama.cpp conversion in a child does."""

from gpt2compress.core import progress


def convert(steps: int) -> str:
    list(progress.track(range(steps), "converting"))
    progress.add_build("cpu/chatty", 1.5)
    with progress.measuring("cpu/chatty"):
        pass
    return "converted"
