"""CUDA graph capture of cuattn calls (cuattn.graph_memory).

CPU: the block changes nothing outside a capture. GPU (marked gpu): attention, gla and decode captured
in CuPy stream capture, relaxed and global mode (torch.cuda.graph's), replayed on new input
contents copied into the captured arrays; each replay must give the bits of an eager call on
those contents (same kernels and launches), and those are held to the float64 reference. The
outputs are poisoned (NaN) before every replay, so an element the graph does not write fails.
Buffers a captured call drops (attention's lse) must stay held: arrays made after the capture
on the same stream must not be overwritten by replays. decode is captured too, with ragged
lengths and paged caches whose contents change between replays (checked on the device at each
replay: a failing call leaves NaN outputs and GraphMemory.check() raises what the eager call
raises, and the next good replay is clean again), and replayed on another stream beside eager
calls on the capturing stream (counters of its own); gla with NumPy cu_seqlens (fixed in the
graph). The checked replays run on the register kernel too (KERNEL "regs", which every GPU but
Hopper runs). decode with work stealing, gla with device cu_seqlens, and calls outside a
graph_memory block raise before queuing anything (the capture stays usable).
"""

import re
import sys

import numpy as np
import pytest

import cuattn
from cuattn import _capture
from cuattn._checks import BFLOAT16
from helpers import misaligned, rel_error

MODES = ["relaxed", "global"]


def test_graph_memory_outside_a_capture_changes_nothing(rng):
    q, k, v = (rng.standard_normal((1, 2, 20, 16)).astype(np.float32) for _ in range(3))
    expected = cuattn.attention(q, k, v, causal=True)
    with cuattn.graph_memory() as memory:
        assert _capture.enter("attention", q) is None  # NumPy arrays: never a capture
        assert not _capture.recording()
        np.testing.assert_array_equal(cuattn.attention(q, k, v, causal=True), expected)
    assert memory.calls == 0 and memory.nbytes == 0
    assert "0 captured calls" in repr(memory)
    memory.check()  # nothing checked: nothing to raise, no GPU needed
    memory.release()


def test_graph_memory_check_names_the_failing_call(monkeypatch):
    """check() waits for each device, reads all of a device's flags in one copy, then raises
    for the first captured call whose flags are set, naming it (host arrays stand in for the
    device flags and a fake CuPy for the waits and the stacking)."""
    from cuattn import _backend
    from cuattn.decode import raise_for_flags

    class Flags:
        def __init__(self, values, device=0):
            self.values, self.device = np.array(values, dtype=np.int32), type("Device", (), {"id": device})()

    synced, copies, current = [], [], []

    class FakeDevice:
        def __init__(self, device):
            self.device = device

        def synchronize(self):
            synced.append(self.device)

        def __enter__(self):
            current.append(self.device)

        def __exit__(self, *exc):
            current.pop()

    class Stacked:
        def __init__(self, flags):
            assert all(f.device.id == current[-1] for f in flags)  # stacked on their own device
            self.values = np.stack([f.values for f in flags])

        def get(self):
            copies.append(len(self.values))
            return self.values

    fake = type("cupy", (), {"cuda": type("cuda", (), {"Device": FakeDevice}), "stack": Stacked})
    monkeypatch.setattr(_backend, "require_cupy", lambda: fake)
    sizes = {"cache_len": 50, "num_pages": 7}
    memory = cuattn.graph_memory()
    memory._checks += [(0, Flags([0, 0]), lambda bad: raise_for_flags(bad, sizes)),
                       (2, Flags([0, 0], device=1), lambda bad: raise_for_flags(bad, sizes)),
                       (3, Flags([0, 1]), lambda bad: raise_for_flags(bad, sizes)),
                       (4, Flags([1, 0], device=1), lambda bad: raise_for_flags(bad, sizes))]
    with pytest.raises(ValueError, match=r"captured cuattn call 3 .*block_table holds pages outside \[0, 7\)"):
        memory.check()
    assert synced == [0, 1] and copies == [2, 2]  # one wait and one copy a device
    memory._checks[2] = (3, Flags([0, 0]), memory._checks[2][2])
    with pytest.raises(ValueError, match=r"captured cuattn call 4 .*cache_seqlens must lie in \[0, 50\]"):
        memory.check()
    assert "4 value-checked" in repr(memory)
    memory.release()
    assert "value-checked" not in repr(memory)
    memory.check()


def test_recording_keeps_what_calls_allocate_and_gives_back_what_refused_calls_did(monkeypatch):
    """A captured call's allocations are held; a call refused after planning (CaptureRefused:
    nothing queued) gives back what it allocated and adds no call; any other error keeps them
    (kernels may already be in the graph). CuPy's allocator hooks and the driver's capture-mode
    exchange are stood in for (no GPU)."""
    import contextlib

    installed = []

    @contextlib.contextmanager
    def using_allocator(allocate):
        installed.append(allocate)
        try:
            yield
        finally:
            installed.pop()

    fake = type("cupy", (), {"cuda": type("cuda", (), {"get_allocator": staticmethod(lambda: lambda size: object()),
                                                       "using_allocator": staticmethod(using_allocator)})})
    modes = []
    monkeypatch.setattr(_capture, "_exchange_capture_mode", lambda mode: modes.append(mode) or 0)
    memory = cuattn.graph_memory()

    def call(sizes, error=None):
        with _capture._Recording(memory, fake):
            assert _capture.recording()
            for size in sizes:
                installed[-1](size)
            if error is not None:
                raise error

    call([100, 28])
    assert (memory.calls, memory.nbytes) == (1, 128)
    with pytest.raises(_capture.CaptureRefused):
        call([4000], _capture.CaptureRefused("refused after planning"))
    assert (memory.calls, memory.nbytes) == (1, 128)
    with pytest.raises(ZeroDivisionError):
        call([8], ZeroDivisionError())
    assert (memory.calls, memory.nbytes) == (1, 136)
    assert not _capture.recording() and not installed
    assert modes == [_capture._RELAXED, 0] * 3  # relaxed for each call, then the old mode back
    assert issubclass(_capture.CaptureRefused, RuntimeError)


def test_graph_memory_blocks_nest():
    outer, inner = cuattn.graph_memory(), cuattn.graph_memory()
    with outer:
        with inner:
            assert _capture._state.scopes == [outer, inner]  # the innermost records
        assert _capture._state.scopes == [outer]
    assert _capture._state.scopes == []


# ---- GPU ----

def capture(cp, mode, body):
    """(graph, memory, stream, body's result): body() captured on a fresh stream in ``mode``
    inside a graph_memory block."""
    stream = cp.cuda.Stream(non_blocking=True)
    modes = {"relaxed": cp.cuda.runtime.streamCaptureModeRelaxed, "global": cp.cuda.runtime.streamCaptureModeGlobal}
    with stream, cuattn.graph_memory() as memory:
        stream.begin_capture(mode=modes[mode])
        try:
            result = body()
        finally:
            graph = stream.end_capture()
    return graph, memory, stream, result


def refill(cp, rng, arrays, stream):
    """New random contents in place (the captured arrays), on the graph's stream."""
    with stream:
        for x in arrays:
            x[...] = cp.asarray(rng.standard_normal(x.shape).astype(np.float32)).astype(x.dtype)


def replay(cp, graph, stream, outputs):
    """Poison the outputs, launch the graph, wait."""
    with stream:
        for x in outputs:
            x[...] = cp.nan
    graph.launch(stream)
    stream.synchronize()


def replay_matches_eager(cp, graph, stream, outputs, eager):
    """Replay into the (poisoned) captured ``outputs``; ``eager()`` on the same stream must give
    the same bits, output by output."""
    replay(cp, graph, stream, outputs)
    with stream:
        expected = eager()
    stream.synchronize()
    for got, want in zip(outputs, expected, strict=True):
        np.testing.assert_array_equal(got.get(), want.get())


ATTENTION_CASES = [
    # (dtype, q shape, k shape, causal, layout)
    (np.float16, (2, 4, 200, 128), (2, 4, 200, 128), True, "bhsd"),   # wgmma on Hopper
    (BFLOAT16, (1, 8, 77, 64), (1, 2, 300, 64), False, "bhsd"),       # GQA, Sq < Sk
    (np.float32, (2, 2, 65, 32), (2, 2, 65, 32), True, "bhsd"),
    (np.float16, (1, 4, 130, 64), (1, 4, 130, 64), True, "unaligned"),  # copied inside the graph
]


@pytest.mark.gpu
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype,shape_q,shape_k,causal,layout", ATTENTION_CASES,
                         ids=["fp16_d128", "bf16_gqa", "fp32", "fp16_unaligned"])
def test_gpu_attention_replays(cp, rng, mode, dtype, shape_q, shape_k, causal, layout):
    def dev(shape):
        x = rng.standard_normal(shape).astype(np.float32).astype(dtype)
        return misaligned(cp, x) if layout == "unaligned" else cp.asarray(x)

    q, k, v = dev(shape_q), dev(shape_k), dev(shape_k)
    cuattn.attention(q, k, v, causal=causal)  # a plan for this layout exists before the capture
    cp.cuda.Device().synchronize()
    graph, memory, stream, (o1, (o2, lse2)) = capture(cp, mode, lambda: (
        cuattn.attention(q, k, v, causal=causal), cuattn.attention(q, k, v, causal=causal, return_lse=True)))
    assert memory.calls == 2 and memory.nbytes >= o1.nbytes + o2.nbytes + lse2.nbytes
    for _ in range(2):  # each replay computes on the contents of that time
        refill(cp, rng, (q, k, v), stream)
        replay_matches_eager(cp, graph, stream, (o1, o2, lse2), lambda: (
            lambda o, lse: (o, o, lse))(*cuattn.attention(q, k, v, causal=causal, return_lse=True)))
        ref = cuattn.reference.attention(q.get(), k.get(), v.get(), causal=causal)
        assert rel_error(o1, ref) < (1e-5 if dtype == np.float32 else 1e-2)
    del graph
    memory.release()


@pytest.mark.gpu
def test_gpu_dropped_buffers_stay_held(cp, rng):
    """attention's lse, dropped when not returned, stays held: replays must not write into
    arrays made after the capture (without graph_memory they would take its pool block)."""
    q, k, v = (cp.asarray(rng.standard_normal((1, 8, 256, 64)).astype(np.float16)) for _ in range(3))
    graph, memory, stream, o = capture(cp, "relaxed", lambda: cuattn.attention(q, k, v))
    lse_bytes = 8 * 256 * 4
    with stream:  # the capture's pool arena: where a freed lse block would be handed out again
        others = [cp.full((1, 8, 256), 7.0, dtype=cp.float32) for _ in range(8)]
    replay(cp, graph, stream, (o,))
    for x in others:
        assert bool((x == 7.0).all())
    assert memory.nbytes >= o.nbytes + lse_bytes
    assert rel_error(o, cuattn.reference.attention(q.get(), k.get(), v.get())) < 1e-2


GLA_CASES = [
    # (mode, dtype, (B, H, T), K, V, with a state in)
    ("chunk", np.float16, (2, 3, 150), 64, 64, True),
    ("chunk", BFLOAT16, (1, 2, 300), 128, 128, False),   # the prepass workspace, dropped
    ("recurrent", np.float32, (2, 2, 40), 64, 32, True),
    ("recurrent", BFLOAT16, (4, 4, 1), 128, 128, True),  # one token (generation)
]


@pytest.mark.gpu
@pytest.mark.parametrize("graph_mode", MODES)
@pytest.mark.parametrize("mode,dtype,lead,kdim,vdim,with_state", GLA_CASES,
                         ids=["chunk_fp16", "chunk_bf16_k128", "recurrent_fp32", "one_token_bf16"])
def test_gpu_gla_replays(cp, rng, graph_mode, mode, dtype, lead, kdim, vdim, with_state):
    def dev(shape, dt=dtype):
        return cp.asarray(rng.standard_normal(shape).astype(np.float32).astype(dt))

    q, k, v = dev(lead + (kdim,)), dev(lead + (kdim,)), dev(lead + (vdim,))
    g = cp.asarray(-np.logaddexp(0.0, -rng.standard_normal(lead + (kdim,))).astype(np.float32).astype(dtype))
    h0 = dev(lead[:2] + (kdim, vdim), np.float32) if with_state else None

    def call():
        return cuattn.gla(q, k, v, g, initial_state=h0, output_final_state=True, mode=mode)

    call()
    cp.cuda.Device().synchronize()
    graph, memory, stream, (o, state) = capture(cp, graph_mode, call)
    assert memory.calls == 1
    for _ in range(2):
        refill(cp, rng, (q, k, v) + ((h0,) if with_state else ()), stream)
        with stream:  # gates stay log-space (<= 0)
            g[...] = -cp.abs(g)
        replay_matches_eager(cp, graph, stream, (o, state), call)
        ro, rs = cuattn.reference.gla(q.get(), k.get(), v.get(), g.get(),
                                      initial_state=None if h0 is None else h0.get(), output_final_state=True)
        assert rel_error(o, ro) < (2e-5 if dtype == np.float32 else 1e-2)
        assert rel_error(state, rs) < (2e-5 if dtype == np.float32 else 1e-2)


DECODE_CASES = [
    # (dtype, B, Hq, Hkv, D, L, ALiBi slopes)
    (np.float16, 1, 8, 8, 128, 5000, "default"),     # one row per item (bulk copies on Hopper)
    (BFLOAT16, 2, 16, 4, 128, 3001, "default"),      # GQA row groups (tensor cores on Hopper)
    (np.float32, 3, 4, 2, 64, 777, None),
]


@pytest.mark.gpu
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype,b,hq,hkv,d,length,slopes", DECODE_CASES, ids=["fp16_mha", "bf16_gqa", "fp32"])
def test_gpu_decode_replays(cp, rng, mode, dtype, b, hq, hkv, d, length, slopes):
    """decode without cache_seqlens or block_table: replays give an eager call's bits."""
    def dev(shape):
        return cp.asarray(rng.standard_normal(shape).astype(np.float32).astype(dtype))

    q, kc, vc = dev((b, hq, 1, d)), dev((b, hkv, length, d)), dev((b, hkv, length, d))

    def call():
        return cuattn.decode(q, kc, vc, alibi_slopes=slopes, return_lse=True)

    call()
    cp.cuda.Device().synchronize()
    graph, memory, stream, (o, lse) = capture(cp, mode, call)
    assert memory.calls == 1
    for _ in range(2):
        refill(cp, rng, (q, kc, vc), stream)
        replay_matches_eager(cp, graph, stream, (o, lse), call)
        ref = cuattn.reference.decode(q.get(), kc.get(), vc.get(), alibi_slopes=slopes)
        assert rel_error(o, ref) < (1e-5 if dtype == np.float32 else 1e-2)


CHECKED_DECODE_CASES = [
    # (dtype, B, Hq, Hkv, D, L, page size (0: contiguous), ALiBi slopes)
    (np.float16, 3, 32, 8, 128, 2500, 64, "default"),  # GQA on tensor cores, paged
    (BFLOAT16, 2, 8, 8, 128, 3001, 0, "default"),      # one row per item (bulk copies), ragged
    (np.float16, 2, 16, 4, 64, 1000, 16, None),        # short pages (cp.async per row)
    (np.float32, 3, 6, 2, 64, 777, 32, "default"),     # float32: the bulk-copy kernel, 3 rows a block
]


def checked_inputs(cp, rng, dtype, b, hq, hkv, d, length, page):
    """q, the K and V caches (pages and a table where ``page``), and lengths (one row empty)."""
    def host(shape):
        return rng.standard_normal(shape).astype(np.float32).astype(dtype)

    q, kc, vc = host((b, hq, 1, d)), host((b, hkv, length, d)), host((b, hkv, length, d))
    table = None
    if page:
        kc, vc, table = cuattn.paged_cache(kc, vc, page, seed=int(rng.integers(1 << 30)))
        table = cp.asarray(table)
    lens = cp.asarray(new_lengths(rng, b, length))
    return cp.asarray(q), cp.asarray(kc), cp.asarray(vc), lens, table


def new_lengths(rng, b, length):
    lens = rng.integers(1, length + 1, size=b).astype(np.int32)
    lens[rng.integers(b)] = 0  # a row with nothing to attend to: zeros
    return lens


@pytest.mark.gpu
@pytest.mark.parametrize("kernel", [None, "regs"], ids=["default_kernel", "register_kernel"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype,b,hq,hkv,d,length,page,slopes", CHECKED_DECODE_CASES,
                         ids=["fp16_gqa_paged", "bf16_mha_ragged", "fp16_short_pages", "fp32_paged"])
def test_gpu_decode_checked_replays(cp, rng, monkeypatch, kernel, mode, dtype, b, hq, hkv, d, length, page, slopes):
    """decode with cache_seqlens (and a block table where paged): each replay reads the lengths
    and pages of its time (new ones copied in between, the pages shuffled anew) and gives an
    eager call's bits; memory.check() passes. On the default kernels and on the register kernel
    (KERNEL "regs": split and merge launches, each checking the flags)."""
    monkeypatch.setattr(sys.modules["cuattn.decode"], "KERNEL", kernel)
    q, kc, vc, lens, table = checked_inputs(cp, rng, dtype, b, hq, hkv, d, length, page)

    def call():
        return cuattn.decode(q, kc, vc, cache_seqlens=lens, block_table=table, alibi_slopes=slopes, return_lse=True)

    call()
    cp.cuda.Device().synchronize()
    graph, memory, stream, (o, lse) = capture(cp, mode, call)
    assert memory.calls == 1 and len(memory._checks) == 1
    for _ in range(2):
        refill(cp, rng, (q, kc, vc), stream)
        with stream:
            lens[...] = cp.asarray(new_lengths(rng, b, length))
            if table is not None:
                table[...] = cp.asarray(rng.permutation(table.get().ravel()).reshape(table.shape))
        replay_matches_eager(cp, graph, stream, (o, lse), call)
        memory.check()
        ref = cuattn.reference.decode(q.get(), kc.get(), vc.get(), cache_seqlens=lens.get(), alibi_slopes=slopes,
                                      block_table=None if table is None else table.get())
        assert rel_error(o, ref) < (1e-5 if dtype == np.float32 else 1e-2)
        assert not bool(cp.isnan(o).any())


@pytest.mark.gpu
@pytest.mark.parametrize("kernel", [None, "regs"], ids=["default_kernel", "register_kernel"])
@pytest.mark.parametrize("paged", [False, True], ids=["lengths", "pages"])
def test_gpu_decode_failed_check_in_a_replay(cp, rng, monkeypatch, kernel, paged):
    """A replay whose lengths (or used pages) are out of range: that call's o and lse are NaN,
    the other captured call computes, memory.check() raises the eager call's ValueError naming
    the call; the next replay on good values is clean again (flags zeroed per replay). On the
    default kernels and on the register kernel."""
    monkeypatch.setattr(sys.modules["cuattn.decode"], "KERNEL", kernel)
    q, kc, vc, lens, table = checked_inputs(cp, rng, np.float16, 2, 8, 2, 64, 600, 32 if paged else 0)
    q2, kc2, vc2, lens2, table2 = checked_inputs(cp, rng, np.float16, 2, 8, 2, 64, 600, 32 if paged else 0)

    def calls():
        return (cuattn.decode(q2, kc2, vc2, cache_seqlens=lens2, block_table=table2, return_lse=True),
                cuattn.decode(q, kc, vc, cache_seqlens=lens, block_table=table, alibi_slopes="default",
                              return_lse=True))

    calls()
    cp.cuda.Device().synchronize()
    graph, memory, stream, ((o2, lse2), (o, lse)) = capture(cp, "relaxed", calls)
    good_lens, good_table = lens.copy(), None if table is None else table.copy()
    with stream:
        if paged:
            table[0, 3] = 10 ** 6  # a page outside the pool, among the pages lens[0] uses
            lens[0] = 4 * 32
        else:
            lens[1] = 601
    stream.synchronize()
    with pytest.raises(ValueError, match="block_table" if paged else "cache_seqlens") as eager:
        calls()
    replay(cp, graph, stream, (o, lse, o2, lse2))
    assert bool(cp.isnan(o).all()) and bool(cp.isnan(lse).all())
    assert not bool(cp.isnan(o2).any())
    with pytest.raises(ValueError, match="captured cuattn call 1 of this graph_memory: " + re.escape(str(eager.value))):
        memory.check()
    with pytest.raises(ValueError):
        memory.check()  # still set: the flags hold the last replay's outcome
    with stream:
        lens[...] = good_lens
        if paged:
            table[...] = good_table
    replay_matches_eager(cp, graph, stream, (o2, lse2, o, lse), lambda: (lambda a, b: a + b)(*calls()))
    memory.check()
    assert not bool(cp.isnan(o).any())


@pytest.mark.gpu
@pytest.mark.parametrize("heads", [(16, 4), (8, 8)], ids=["gqa_tensor_cores", "mha_bulk_copies"])
def test_gpu_decode_graph_beside_eager_calls(cp, rng, heads):
    """A captured decode call has work counters of its own: its graph replayed on another stream
    while eager calls of the same layout run on the capturing stream (on that stream's counters),
    with no ordering between the two, gives an eager call's bits, and so do the eager calls."""
    hq, hkv = heads

    def inputs():
        return (cp.asarray(rng.standard_normal(shape).astype(np.float16))
                for shape in ((2, hq, 1, 128), (2, hkv, 20000, 128), (2, hkv, 20000, 128)))

    q, kc, vc = inputs()
    q2, kc2, vc2 = inputs()
    lens = cp.asarray(np.array([20000, 13001], dtype=np.int32))

    def call(a, b, c):
        return cuattn.decode(a, b, c, cache_seqlens=lens, alibi_slopes="default")

    call(q, kc, vc)
    cp.cuda.Device().synchronize()
    graph, memory, stream, o = capture(cp, "relaxed", lambda: call(q, kc, vc))
    with stream:
        expected, expected2 = call(q, kc, vc).get(), call(q2, kc2, vc2).get()
    other = cp.cuda.Stream(non_blocking=True)
    eager = []
    for _ in range(4):
        with other:
            o[...] = cp.nan
        graph.launch(other)
        with stream:  # same layout, the capturing stream's counters, at the same time as the replay
            eager.append(call(q2, kc2, vc2))
    other.synchronize()
    stream.synchronize()
    np.testing.assert_array_equal(o.get(), expected)
    for x in eager:
        np.testing.assert_array_equal(x.get(), expected2)
    memory.check()


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["chunk", "recurrent"])
def test_gpu_gla_varlen_replays(cp, rng, mode):
    """gla with NumPy cu_seqlens: the offsets are fixed in the graph; replays on new contents
    give an eager call's bits (tokens past the last offset: zeros)."""
    cu = np.array([0, 70, 70, 201, 260], dtype=np.int32)

    def dev(shape, dt=np.float16):
        return cp.asarray(rng.standard_normal(shape).astype(np.float32).astype(dt))

    q, k, v = dev((1, 2, 270, 64)), dev((1, 2, 270, 64)), dev((1, 2, 270, 64))
    g = -cp.abs(dev((1, 2, 270, 64)))
    h0 = dev((4, 2, 64, 64), np.float32)

    def call():
        return cuattn.gla(q, k, v, g, initial_state=h0, output_final_state=True, cu_seqlens=cu, mode=mode)

    call()
    cp.cuda.Device().synchronize()
    graph, memory, stream, (o, state) = capture(cp, "global", call)
    assert memory.calls == 1
    for _ in range(2):
        refill(cp, rng, (q, k, v, h0), stream)
        with stream:
            g[...] = -cp.abs(g)
        replay_matches_eager(cp, graph, stream, (o, state), call)
        ro, rs = cuattn.reference.gla(q.get(), k.get(), v.get(), g.get(), initial_state=h0.get(),
                                      output_final_state=True, cu_seqlens=cu)
        assert rel_error(o, ro) < 1e-2 and rel_error(state, rs) < 1e-2


@pytest.mark.gpu
@pytest.mark.parametrize("mode", MODES)
def test_gpu_refused_captures_queue_nothing(cp, rng, mode, monkeypatch):
    """decode with work stealing, gla with device
    cu_seqlens, and any call outside graph_memory raise a RuntimeError that says why, before
    queuing anything: the capture ends cleanly and its (empty) graph launches."""
    q = cp.asarray(rng.standard_normal((2, 8, 1, 64)).astype(np.float16))
    kc = cp.asarray(rng.standard_normal((2, 2, 100, 64)).astype(np.float16))
    x = cp.asarray(rng.standard_normal((1, 2, 40, 64)).astype(np.float16))
    gates = -cp.abs(x)
    cu = cp.asarray(np.array([0, 15, 40], dtype=np.int32))
    modes = {"relaxed": cp.cuda.runtime.streamCaptureModeRelaxed, "global": cp.cuda.runtime.streamCaptureModeGlobal}
    decode_module = sys.modules["cuattn.decode"]

    def stealing():
        monkeypatch.setattr(decode_module, "STEAL", True)
        try:
            return cuattn.decode(q, kc, kc)
        finally:
            monkeypatch.setattr(decode_module, "STEAL", False)

    cases = [
        (stealing, True, "STEAL"),
        (lambda: cuattn.gla(x, x, x, gates, cu_seqlens=cu), True, "cu_seqlens"),
        (lambda: cuattn.attention(x, x, x), False, "graph_memory"),
    ]
    for call, in_block, words in cases:
        stream = cp.cuda.Stream(non_blocking=True)
        memory = cuattn.graph_memory()
        with stream:
            stream.begin_capture(mode=modes[mode])
            try:
                with pytest.raises(RuntimeError, match=words):
                    if in_block:
                        with memory:
                            call()
                    else:
                        call()
            finally:
                graph = stream.end_capture()
        graph.launch(stream)
        stream.synchronize()
        assert memory.calls == 0 and memory.nbytes == 0


@pytest.mark.gpu
# CuPy 14 deprecates ExternalStream; older ones lack from_external
@pytest.mark.filterwarnings("ignore:ExternalStream is deprecated:DeprecationWarning")
def test_gpu_torch_graph(cp, rng):
    """Captured by torch.cuda.graph (global mode, torch's stream made CuPy's current one):
    attention and decode on DLPack views of torch tensors replay on new contents."""
    torch = pytest.importorskip("torch")
    qt, kt, vt = (torch.randn(2, 8, 96, 64, device="cuda", dtype=torch.float16) for _ in range(3))
    dq, kct = torch.randn(2, 8, 1, 64, device="cuda", dtype=torch.float16), torch.randn(
        2, 2, 2000, 64, device="cuda", dtype=torch.float16)
    q, k, v, dqc, kc = (cp.from_dlpack(t) for t in (qt, kt, vt, dq, kct))

    def calls():
        with cp.cuda.ExternalStream(torch.cuda.current_stream().cuda_stream):
            return cuattn.attention(q, k, v, causal=True), cuattn.decode(dqc, kc, kc, alibi_slopes="default")

    side = torch.cuda.Stream()  # torch's recipe: warm up on a side stream
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        calls()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with cuattn.graph_memory() as memory, torch.cuda.graph(graph):
        o, od = calls()
    assert memory.calls == 2
    for t in (qt, kt, vt, dq, kct):
        t.copy_(torch.randn_like(t))
    o[...] = cp.nan
    od[...] = cp.nan
    cp.cuda.Device().synchronize()
    graph.replay()
    torch.cuda.synchronize()
    eo, eod = calls()
    torch.cuda.synchronize()
    np.testing.assert_array_equal(o.get(), eo.get())
    np.testing.assert_array_equal(od.get(), eod.get())
    assert rel_error(o, cuattn.reference.attention(q.get(), k.get(), v.get(), causal=True)) < 1e-2


def test_eager_changes_nothing_outside_a_captured_call():
    assert not _capture.recording()
    with _capture.eager() as ctx:
        assert ctx is None  # the shared null context: no side stream
