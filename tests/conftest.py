"""Shared test fixtures: fresh random inputs, GPU skipping, error measures."""

import faulthandler
import os
import secrets
import time

import numpy as np
import pytest

from cuattn._backend import gpu_available


def pytest_collection_modifyitems(config, items):
    from helpers import broken_page_cases

    bad = broken_page_cases(items)
    if bad:
        more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise pytest.UsageError("paged test cases must be whole pages (tests/helpers.py to_paged): "
                                + "; ".join(bad[:5]) + more)
    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU with CuPy (none found)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """CUATTN_TEST_WATCHDOG="SECONDS:PATH" (benchmarks/gpu_session.sh sets it): each test's id and
    start time go to PATH.<pid>, and every SECONDS a test runs on, the stacks of all threads too, so
    a test run cut off by a time limit still says which test it was in and where."""
    watchdog = os.environ.get("CUATTN_TEST_WATCHDOG")
    if not watchdog:
        yield
        return
    seconds, path = watchdog.split(":", 1)
    with open(f"{path}.{os.getpid()}", "a") as log:
        log.write(f"{time.strftime('%H:%M:%S')} {item.nodeid}\n")
        log.flush()
        faulthandler.dump_traceback_later(float(seconds), repeat=True, file=log)
        try:
            yield
        finally:
            faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def rng(request):
    """A fresh generator per test; the seed is printed on failure so a case can be replayed."""
    seed = int(os.environ.get("CUATTN_TEST_SEED", secrets.randbits(32)))
    request.node.user_properties.append(("seed", seed))
    print(f"seed={seed}")
    return np.random.default_rng(seed)


@pytest.fixture
def cp():
    import cupy

    return cupy
