"""Launch-plan keys of the GPU entry points (cuattn._plans), on stand-in CuPy arrays: no GPU needed.

A plan is reused by any later call with an equal key and skips the argument checks, so the key
must change with everything the checks and the planning look at, and must not change with what
they do not (the data's address beyond its 16-byte alignment)."""

import sys
from types import SimpleNamespace

import numpy as np
import pytest

from cuattn import _plans

attention_mod = sys.modules["cuattn.attention"]
decode_mod = sys.modules["cuattn.decode"]
gla_mod = sys.modules["cuattn.gla"]


class StandIn:
    """What the keys read of a cupy.ndarray."""

    def __init__(self, shape, dtype=np.float16, ptr=4096, strides=None):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.ndim = len(self.shape)
        self.strides = strides or tuple(int(np.prod(self.shape[i + 1:])) * self.dtype.itemsize
                                        for i in range(self.ndim))
        self.data = SimpleNamespace(ptr=ptr)


class SubStandIn(StandIn):
    pass


@pytest.fixture
def gpu(monkeypatch):
    """A stand-in ``cupy`` module in sys.modules: its ndarray is StandIn; device and stream are
    settable through the returned namespace."""
    state = SimpleNamespace(device=0, stream=0)
    fake = SimpleNamespace(
        ndarray=StandIn,
        cuda=SimpleNamespace(runtime=SimpleNamespace(getDevice=lambda: state.device),
                             get_current_stream=lambda: SimpleNamespace(ptr=state.stream)))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    return state


def variants(base, make):
    """make(**base) and make() of every single change in `base`'s alternatives: (name, key)."""
    yield "base", make(**{k: v[0] for k, v in base.items()})
    for name, values in base.items():
        for value in values[1:]:
            yield f"{name}={value!r}", make(**{k: (value if k == name else v[0]) for k, v in base.items()})


def assert_distinct(keys):
    keys = list(keys)
    assert all(key is not None for _, key in keys), [name for name, key in keys if key is None]
    seen = {}
    for name, key in keys:
        assert key not in seen, f"{name} gives the key of {seen.get(key)}"
        seen[key] = name


def test_attention_key(gpu, monkeypatch):
    def make(shape=(2, 4, 64, 64), dtype=np.float16, ptr=4096, kshape=(2, 2, 64, 64), causal=False, scale=None,
             return_lse=False, device=0, stream=0, strides=None):
        gpu.device, gpu.stream = device, stream
        q = StandIn(shape, dtype, ptr, strides)
        k, v = StandIn(kshape, dtype, ptr + (1 << 20)), StandIn(kshape, dtype, ptr + (2 << 20))
        return attention_mod._plan_key(q, k, v, causal, scale, return_lse, None)

    base = dict(shape=[(2, 4, 64, 64), (2, 4, 65, 64)], dtype=[np.float16, np.float32], ptr=[4096, 4098],
                kshape=[(2, 2, 64, 64), (2, 4, 64, 64)], causal=[False, True], scale=[None, 0.5, -1],
                return_lse=[False, True], device=[0, 1], stream=[0, 7],
                strides=[None, (2 * 64 * 4 * 64, 2 * 64, 2 * 4 * 64, 2)])
    assert_distinct(variants(base, make))
    assert make(ptr=4096) == make(ptr=8192 + 16)  # another address, the same alignment
    key = make()
    monkeypatch.setattr(attention_mod, "USE_WGMMA", not attention_mod.USE_WGMMA)
    assert make() != key
    q = StandIn((2, 4, 64, 64))
    assert attention_mod._plan_key(q, q, q, False, None, False, "cpu") is None
    assert attention_mod._plan_key(q, q, q, 1, None, False, None) is None  # not a bool: the full path checks it
    assert attention_mod._plan_key(q, q, q, False, np.float32(0.5), False, None) is None
    assert attention_mod._plan_key(SubStandIn(q.shape), q, q, False, None, False, None) is None
    assert attention_mod._plan_key(np.zeros(q.shape), q, q, False, None, False, None) is None


def test_gla_key(gpu, monkeypatch):
    def make(t=1, kdim=64, dtype=np.float16, ptr=4096, state=True, state_ptr=8192, state_dtype=np.float32, final=True,
             mode="recurrent", scale=None, stream=0):
        gpu.stream = stream
        q, k, g = (StandIn((2, 3, t, kdim), dtype, ptr + (i << 20)) for i in range(3))
        v = StandIn((2, 3, t, 32), dtype, ptr + (3 << 20))
        h0 = StandIn((2, 3, kdim, 32), state_dtype, state_ptr) if state else None
        return gla_mod._plan_key(q, k, v, g, scale, h0, final, None, mode, None)

    base = dict(kdim=[64, 128], dtype=[np.float16, np.float32], ptr=[4096, 4100], state=[True, False],
                state_ptr=[8192, 8196], state_dtype=[np.float32, np.float16], final=[True, False],
                mode=["recurrent", "chunk"], scale=[None, 2.0], stream=[0, 3])
    assert_distinct(variants(base, make))
    key = make()
    monkeypatch.setattr(gla_mod, "STEP_ROWS", 8 if gla_mod.STEP_ROWS != 8 else 16)
    assert make() != key
    assert make(t=2) is None  # plans are for one-token calls only
    q = StandIn((2, 3, 1, 64))
    assert gla_mod._plan_key(q, q, q, q, None, None, True, StandIn((3,), np.int32), "chunk", None) is None
    assert gla_mod._plan_key(q, q, q, q, None, np.zeros((2, 3, 64, 64)), True, None, "chunk", None) is None
    assert gla_mod._plan_key(q, q, q, q, None, None, 1, None, "chunk", None) is None


def test_decode_key(gpu):
    def make(b=2, length=4096, ptr=4096, seqlens=False, table=False, slopes=None, scale=None, lse=False):
        q = StandIn((b, 8, 1, 128), np.float16, ptr)
        k, v = (StandIn((b, 2, length, 128), np.float16, ptr + (i << 24)) for i in (1, 2))
        lens = StandIn((b,), np.int32, 64) if seqlens else None
        tab = StandIn((b, 16), np.int32, 128) if table else None
        sl = StandIn((8,), np.float32, 256) if slopes == "array" else slopes
        return decode_mod._plan_key(q, k, v, lens, sl, scale, tab, lse, None)

    base = dict(b=[2, 3], length=[4096, 4097], ptr=[4096, 4104], seqlens=[False, True], table=[False, True],
                slopes=[None, "default", "array"], scale=[None, 0.1], lse=[False, True])
    assert_distinct(variants(base, make))
    # cache_seqlens, block tables and slopes are read by scalar loads: their addresses are not in the key
    q = StandIn((2, 8, 1, 128))
    kv = StandIn((2, 2, 64, 128))
    keys = {decode_mod._plan_key(q, kv, kv, StandIn((2,), np.int32, ptr), None, None, None, False, None)
            for ptr in (64, 68)}
    assert len(keys) == 1
    assert decode_mod._plan_key(q, kv, kv, np.zeros(2, np.int32), None, None, None, False, None) is None
    assert decode_mod._plan_key(q, kv, kv, None, "alibi", None, None, False, None) is None


def test_remember_keeps_the_latest():
    plans = {}
    for i in range(5):
        _plans.remember(plans, i, f"plan {i}", 3)
    assert list(plans) == [2, 3, 4]
    _plans.remember(plans, 9, "plan 9", 0)  # plans off: nothing kept, nothing dropped
    assert list(plans) == [2, 3, 4]
    _plans.remember(plans, 9, "plan 9", 2)  # a smaller limit drops down to it
    assert list(plans) == [4, 9]
