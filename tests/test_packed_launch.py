"""cuattn._cuda.PackedLaunch packs kernel arguments as cuLaunchKernel reads them (no GPU needed:
the driver call is replaced by a recorder)."""

import ctypes
import logging

import numpy as np
import pytest

cupy = pytest.importorskip("cupy")

from cuattn import _cuda  # noqa: E402


class FakeKernel:
    """Stands in for a CuPy RawKernel: .kernel.ptr is the CUfunction handle."""

    class kernel:  # noqa: N801 - mirrors RawKernel.kernel
        ptr = 0xF00D


def cell(params_ptr, i, ctype):
    """What the driver reads for argument i: the value behind params[i]."""
    address = ctypes.c_uint64.from_address(params_ptr + 8 * i).value
    return ctype.from_address(address).value


@pytest.mark.parametrize("values", [[0x7F12_3456_7890, 5], [1 << 40, 2_000_000_000]])
def test_packed_arguments_and_slots(values):
    rng = np.random.default_rng()
    i32, i64, f32 = int(rng.integers(-2**31, 2**31)), int(rng.integers(-2**62, 2**62)), float(rng.standard_normal())
    packed = _cuda.PackedLaunch(FakeKernel(), (3, 2), (128,),
                                ["ptr", np.int32(i32), np.int64(i64), np.float32(f32), "gen"], shared_mem=4096)
    assert packed.slots == ["ptr", "gen"] and packed.grid == (3, 2, 1) and packed.block == (128, 1, 1)
    seen = []
    packed._launch = lambda *args: seen.append((args, [
        cell(args[9], 0, ctypes.c_uint64), cell(args[9], 1, ctypes.c_int32), cell(args[9], 2, ctypes.c_int64),
        cell(args[9], 3, ctypes.c_float), cell(args[9], 4, ctypes.c_int32)]))
    packed(stream_ptr=77, values=values)
    (args, cells), = seen
    assert args[:9] == (0xF00D, 3, 2, 1, 128, 1, 1, 4096, 77) and args[10] == 0
    assert cells[0] == values[0] and cells[4] == values[1]
    assert cells[1] == i32 and cells[2] == i64 and cells[3] == np.float32(f32)
    # a second call rewrites only the slots
    packed(stream_ptr=0, values=[values[0] + 16, 9])
    assert seen[1][1][0] == values[0] + 16 and seen[1][1][4] == 9 and seen[1][1][1:4] == cells[1:4]


def test_programmatic_launch_config(monkeypatch):
    """programmatic=True launches through cuLaunchKernelEx: the CUlaunchConfig carries the grid,
    block, shared memory and stream, and one attribute, programmatic stream serialization (id 6)
    with value 1; the parameters are the same packed cells; a driver error is a RuntimeError with
    the driver's text."""
    seen = []

    def fake_launch(config_ref, function, params, extra):
        c = ctypes.cast(config_ref, ctypes.POINTER(_cuda._LaunchConfig)).contents
        attr = c.attrs[0]
        seen.append((tuple(c.grid), tuple(c.block), c.shared_mem, c.stream, c.num_attrs, attr.id, attr.value,
                     function, cell(params, 0, ctypes.c_uint64), cell(params, 1, ctypes.c_int32), extra))
        return rc[0]

    def fake_error(code, text_ref):
        ctypes.cast(text_ref, ctypes.POINTER(ctypes.c_char_p))[0] = b"invalid argument"
        return 0

    rc = [0]
    monkeypatch.setattr(_cuda, "_launch_ex", lambda: (fake_launch, fake_error))
    packed = _cuda.PackedLaunch(FakeKernel(), (5,), (160,), ["ptr", np.int32(-7)], shared_mem=110_000,
                                programmatic=True)
    packed._launch = lambda *args: pytest.fail("the plain launch path was taken")
    packed(stream_ptr=0x1234, values=[0xABC0])
    packed(stream_ptr=0, values=[0xDEF0])
    assert seen[0] == ((5, 1, 1), (160, 1, 1), 110_000, 0x1234, 1, 6, 1, 0xF00D, 0xABC0, -7, None)
    assert seen[1][3] is None and seen[1][8] == 0xDEF0  # the legacy stream, the slot rewritten
    rc[0] = 1
    with pytest.raises(RuntimeError, match=r"cuLaunchKernelEx failed \(1\): invalid argument"):
        packed(stream_ptr=0, values=[0])
    assert ctypes.sizeof(_cuda._LaunchAttribute) == 72 and ctypes.sizeof(_cuda._LaunchConfig) == 56  # cuda.h


def test_unsupported_argument_is_a_type_error():
    with pytest.raises(TypeError, match="kernel argument 1"):
        _cuda.PackedLaunch(FakeKernel(), (1,), (32,), ["x", 3.5])


def test_kernel_first_use_is_logged(monkeypatch, caplog):
    """A kernel's first use in a process (an NVRTC compile of seconds, or CuPy's disk cache) is
    logged on the "cuattn" logger: INFO from one second, else DEBUG; later uses are not."""
    clock = iter([10.0, 12.5, 20.0, 20.2])
    monkeypatch.setattr(_cuda, "_clock", lambda: next(clock))

    class Module:
        def get_function(self, expression):
            return object()

    monkeypatch.setattr(_cuda, "_module", lambda name, exprs, options: Module())
    _cuda._kernel_on.cache_clear()
    try:
        with caplog.at_level(logging.DEBUG, logger="cuattn"):
            _cuda._kernel_on(0, "decode.cu", "k<1>", ("-DX",), 0)
            _cuda._kernel_on(0, "decode.cu", "k<1>", ("-DX",), 0)  # cached: no record
            _cuda._kernel_on(0, "gla.cu", "g<2>", (), 0)
    finally:
        _cuda._kernel_on.cache_clear()
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "cuattn"]
    assert len(records) == 2
    assert records[0][0] == logging.INFO and "k<1> (cuda/decode.cu -DX)" in records[0][1] and "2.5 s" in records[0][1]
    assert records[1][0] == logging.DEBUG and "g<2> (cuda/gla.cu)" in records[1][1] and "0.2 s" in records[1][1]


def test_shared_memory_limit_only_rises(monkeypatch):
    """Entries of the kernel cache with the same (file, expression, options) share the module's
    function, and so its dynamic shared-memory limit: a later entry with a smaller limit must not
    lower it under launches of the earlier one (decode.PDL_TRIGGER pads one-block-per-SM launches
    of a kernel whose other launches ask for less); 48 KB and below leave it alone."""

    class Function:  # one module function: what every get_function of it shares
        max_dynamic_shared_size_bytes = 0

    function = Function()

    class Module:
        def get_function(self, expression):
            return function

    monkeypatch.setattr(_cuda, "_module", lambda name, exprs, options: Module())
    _cuda._kernel_on.cache_clear()
    try:
        limits = []
        for smem in (116736, 107592, 40000, 120000, 100000):
            _cuda._kernel_on(0, "decode.cu", "k<1>", ("-DX",), smem)
            limits.append(function.max_dynamic_shared_size_bytes)
    finally:
        _cuda._kernel_on.cache_clear()
    assert limits == [116736, 116736, 116736, 120000, 120000]
