"""A stand-in for pytest-profiling: its options as that plugin declares them (`--profile`, `--profile-svg`)."""


def pytest_addoption(parser):
    group = parser.getgroup("Profiling")
    group.addoption("--profile", action="store_true", help="generate profiling information")
    group.addoption("--profile-svg", action="store_true", help="generate profiling graph")
