"""The suite hands pytest-benchmark its rounds through public API only (`pedantic` and the `timer=` marker): rounds it
times are handed back as timed, and rounds timed elsewhere (a child process, train's steps) become the row's own."""

import json
import time

from gpt2compress.suite.clock import BenchClock

pytest_plugins = "pytester"

USER = '''
import time

import pytest

from gpt2compress.suite.clock import CLOCK
from gpt2compress.suite.fixtures import benchmark_runner, report_rounds


@pytest.mark.benchmark(timer=CLOCK)
def test_replayed(benchmark):
    report_rounds(benchmark, [0.25, 0.5, 1.0])


@pytest.mark.benchmark(timer=CLOCK)
def test_timed(benchmark):
    timed = benchmark_runner(benchmark)(lambda: time.sleep(0.02), lambda: None, 3, 1)
    benchmark.extra_info["handed_back"] = timed
'''


def test_replayed_rounds_are_the_rows_statistics_and_timed_ones_come_back(pytester):
    pytester.makepyfile(test_user=USER)
    out = pytester.path / "out.json"
    result = pytester.runpytest_subprocess("-p", "no:gpt2compress", "-p", "no:gpt2compress_fixtures", "-W",
                                           "error::pytest_benchmark.logger.PytestBenchmarkWarning",
                                           f"--benchmark-json={out}")
    assert result.ret == 0, result.stdout.str()[-3000:]
    rows = {row["name"]: row for row in json.loads(out.read_text())["benchmarks"]}
    replayed = rows["test_replayed"]["stats"]
    assert replayed["rounds"] == 3 and replayed["data"] == [0.25, 0.5, 1.0] and replayed["median"] == 0.5
    timed = rows["test_timed"]
    assert timed["stats"]["rounds"] == 3 and timed["extra_info"]["handed_back"] == timed["stats"]["data"]
    assert all(0.015 < s < 1.0 for s in timed["stats"]["data"])


def test_the_clock_is_perf_counter_outside_a_replay():
    clock = BenchClock()
    with clock.replaying([2.0]):
        start, end = clock(), clock()
    assert end - start == 2.0
    before = time.perf_counter()
    a, b = clock(), clock()
    assert before <= a <= b <= time.perf_counter()  # perf_counter again
