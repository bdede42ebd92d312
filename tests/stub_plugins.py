"""Stand-ins for well-known pytest plugins a team runs beside the bench: their options as those plugins declare
them. A name ours also declared would be `ValueError: option names {...} already added` at startup."""

STUBBED = {
    "pytest-profiling": (("--profile", "store_true"), ("--profile-svg", "store_true")),
    "pytest-playwright": (("--browser", "append"), ("--headed", "store_true"), ("--device", None),
                          ("--tracing", None), ("--output", None), ("--video", None), ("--screenshot", None)),
    "pytest-memray": (("--memray", "store_true"), ("--memray-bin-path", None), ("--most-allocations", None),
                      ("--native", "store_true"), ("--stacks", None)),
    "pytest-timeout": (("--timeout", None),),
    "pytest-split": (("--splits", None), ("--group", None), ("--durations-path", None)),
    "pytest-repeat": (("--count", None),),
}


def pytest_addoption(parser):
    for plugin, options in STUBBED.items():
        group = parser.getgroup(plugin)
        for flag, action in options:
            group.addoption(flag, action=action or "store", help=f"(a stand-in for {plugin}'s {flag})")
