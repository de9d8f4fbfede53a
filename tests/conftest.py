"""Shared test fixtures: fresh random inputs, GPU skipping, error measures."""

import os
import secrets

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
