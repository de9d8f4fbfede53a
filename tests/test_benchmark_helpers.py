"""CPU tests of the benchmark scripts' helpers (benchmarks/common.py)."""

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("cupy")  # (benchmarks/common.py imports it; no GPU needed)


@pytest.fixture(scope="module")
def common():
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "common.py"
    spec = importlib.util.spec_from_file_location("_benchmarks_common", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules.pop("_benchmarks_common", None)
    return module


@pytest.mark.parametrize("n, rounds", [(20, 7), (17, 3), (5, 5), (4, 7), (1, 7), (9, 1)])
def test_round_order_spreads_places(common, n, rounds):
    """Every round is a rotation of the names (each timed once); over the rounds a name's places
    step by about n / rounds (not by one), so each name visits the whole order where rounds < n,
    and with rounds == n every place once."""
    names = [f"c{i}" for i in range(n)]
    orders = [common.round_order(names, r, rounds) for r in range(rounds)]
    for order in orders:
        assert sorted(order) == sorted(names)
        start = names.index(order[0])
        assert order == names[start:] + names[:start]
    assert orders[0] == names
    places = {name: [order.index(name) for order in orders] for name in names}
    if rounds == n:
        assert all(sorted(p) == list(range(n)) for p in places.values())
    if 1 < rounds < n:
        step = n / rounds
        for name, p in places.items():
            # the largest gap between a name's places (around the circle) is about one step
            ps = sorted(p)
            gaps = [b - a for a, b in zip(ps, ps[1:])] + [ps[0] + n - ps[-1]]
            assert max(gaps) <= int(step) + 1, (name, p)
    assert common.round_order([], 0, 3) == []


def test_host_time_is_the_median_batch(common, monkeypatch):
    """host_time: the median of its batches' per-call wall times (one slow batch does not move it),
    each batch between two device synchronizations (a stand-in device here: no GPU needed)."""
    events = []

    class Device:
        def synchronize(self):
            events.append("sync")

    monkeypatch.setattr(common, "cupy", SimpleNamespace(cuda=SimpleNamespace(Device=Device)))
    clock = iter([0.0, 10.0, 10.0, 30.0, 30.0, 40.0, 40.0, 1040.0, 1040.0, 1050.0])
    monkeypatch.setattr(common.time, "perf_counter", lambda: next(clock))
    calls = []
    per_call = common.host_time(lambda: calls.append(1), calls=10, repeats=5)
    assert per_call == pytest.approx(1.0)  # batches of 10, 20, 10, 1000, 10 s over 10 calls each
    assert len(calls) == 50
    assert events == ["sync"] * 10
