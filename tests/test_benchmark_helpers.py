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


def test_one_row_scope_lists_the_rules(capsys, monkeypatch):
    """benchmarks/decode_one_row_scope.py --list (no GPU): each shape's one-row rule verdicts as
    cuattn.decode plans them on 132 SMs: B 1 32/32 L 33001 taken by the few-split-rows rule, B 64
    32/32 L 2048 by the whole-rows rule, B 8 32/32 L 2048 by neither (two blocks an SM)."""
    import json

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "decode_one_row_scope.py"
    spec = importlib.util.spec_from_file_location("_decode_one_row_scope", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setattr(sys, "path", list(sys.path))  # (the script puts benchmarks/ first)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["decode_one_row_scope.py", "--list", "--sms", "132"])
    module.main()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(module.SHAPES)
    by_shape = dict(zip(module.SHAPES, (json.loads(line.split(":", 1)[1]) for line in lines)))
    assert by_shape[1, 32, 33001]["few"] and by_shape[1, 32, 33001]["auto_kernel"] == "mma"
    assert by_shape[64, 32, 2048]["whole"] and by_shape[64, 32, 2048]["auto_kernel"] == "mma"
    assert not by_shape[8, 32, 2048]["whole"] and not by_shape[8, 32, 2048]["few"]
    assert by_shape[8, 32, 2048]["auto_kernel"] == "tma"
