"""CUDA graph capture of cuattn calls: what keeps a captured call's buffers alive, and the checks.

A call captured in a CUDA graph (CuPy ``Stream.begin_capture``, ``torch.cuda.graph``) runs later,
at every replay, on the device memory it was given while capturing. Arrays the call makes and
drops (attention's log-sum-exp when not returned, GLA's workspaces, copies of misaligned inputs,
Hopper tensor maps) would go back to CuPy's memory pool at once and be handed to other arrays
while the graph still writes or reads them. So a captured call runs inside
:func:`graph_memory`: every allocation it makes is recorded there and stays allocated while the
caller keeps that object (as long as the graph). While a captured call runs, this thread's
capture mode is relaxed (``cuThreadExchangeStreamCaptureMode``), so the allocations and the
tensor maps' upload on a side stream are allowed under ``torch.cuda.graph``'s global mode too.

Buffers that calls share and fill once (constants, default slopes) are made on a side stream
that runs at once (``eager``), so they hold their contents for eager calls too; so are a
captured decode call's own zeroed work counters (eager calls share per-stream ones), which lets
its graph replay on any stream.

``cuattn.decode`` with ``cache_seqlens`` or ``block_table`` checks their values on the device at
every replay instead of waiting on the host: a failed check leaves that call's outputs NaN and
its flags set, which ``GraphMemory.check()`` turns into the ValueError an eager call raises
(``checked``). Not capturable, raising before queuing anything: ``cuattn.decode`` with
``cuattn.decode.STEAL`` (launch tags from the host), and ``cuattn.gla`` with ``cu_seqlens`` on the device
(offsets are read on the host to plan the launch; NumPy offsets are taken and fixed in the graph).
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
import threading

import numpy as np

_state = threading.local()  # .scopes: entered GraphMemory objects; .active: inside a captured call


class CaptureRefused(RuntimeError):
    """A call that cannot be captured, raised before it queued anything: what it allocated
    while planning goes back to the pool (nothing in the graph uses it)."""


class GraphMemory:
    """Device memory held for CUDA graphs that contain cuattn calls (see :func:`graph_memory`).

    Attributes
    ----------
    nbytes : int
        Bytes recorded so far (outputs, workspaces and tensor maps of the captured calls).
    calls : int
        Captured cuattn calls recorded so far.
    """

    def __init__(self):
        self._blocks = []
        self._checks = []  # (captured call number, device flags, raise for flags) of checked decode calls
        self.calls = 0

    @property
    def nbytes(self) -> int:
        return sum(size for _, size in self._blocks)

    def release(self) -> None:
        """Give the recorded memory back to CuPy's pool. Only once no graph that holds these
        calls will be launched again (or is running)."""
        self._blocks.clear()
        self._checks.clear()

    def check(self) -> None:
        """Raise the ValueError an eager call would have raised if a value check of the last
        replay failed.

        ``cuattn.decode`` calls captured with ``cache_seqlens`` or ``block_table`` check those
        values on the device at every replay (lengths within the cache, used pages within the
        pool). A call whose check fails computes nothing: its outputs (and ``lse``) are NaN, and
        its flags stay set until the next replay. This waits for the device (every stream), then
        reads the flags of every checked call.

        Raises
        ------
        ValueError
            Naming the first failing captured call (counted from 0 among this object's captured
            calls) and what was wrong, as the eager call says it.
        """
        if not self._checks:
            return
        from ._backend import require_cupy

        cupy = require_cupy()
        found = {}  # position in self._checks -> that call's flags on the host
        for device in sorted({flags.device.id for _, flags, _ in self._checks}):
            current = cupy.cuda.Device(device)
            with current:
                current.synchronize()
                mine = [i for i, (_, flags, _) in enumerate(self._checks) if flags.device.id == device]
                # one stacking kernel and one copy for all of a device's flags, not a copy per call
                stacked = cupy.stack([self._checks[i][1] for i in mine]).get()
                found.update(zip(mine, stacked))
        for i, (number, _, raise_for) in enumerate(self._checks):
            bad = found[i]
            if bad.any():
                try:
                    raise_for(bad)
                except ValueError as error:
                    raise ValueError(f"captured cuattn call {number} of this graph_memory: {error}") from None

    def __enter__(self) -> "GraphMemory":
        scopes = getattr(_state, "scopes", None)
        if scopes is None:
            scopes = _state.scopes = []
        scopes.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _state.scopes.remove(self)

    def __repr__(self) -> str:
        checked = f", {len(self._checks)} value-checked" if self._checks else ""
        return f"<cuattn.GraphMemory: {self.calls} captured calls{checked}, {self.nbytes} bytes held>"


def graph_memory() -> GraphMemory:
    """Hold the device memory of cuattn calls captured in a CUDA graph.

    Capture cuattn calls inside ``with cuattn.graph_memory() as memory:`` and keep ``memory``
    as long as the graph may be launched: every buffer a captured call allocates (its outputs,
    and what it would otherwise drop at once: attention's log-sum-exp when not returned,
    workspaces, copies of misaligned inputs, Hopper tensor maps) is recorded there and stays
    allocated. Outside a capture the block changes nothing. A call captured outside such a
    block raises ``RuntimeError``. Capturable: ``attention``; ``gla`` (``cu_seqlens`` as a NumPy
    array: its offsets are fixed in the graph); ``decode`` (a captured call has work counters
    of its own: its graph may be replayed on any stream).

    Every replay computes on the contents the captured arrays hold at that time (copy new
    inputs into them, as for any graph): decode's ``cache_seqlens`` and ``block_table`` too,
    whose values each replay checks on the device. A call whose check fails computes nothing
    and leaves its outputs NaN; ``memory.check()`` after the replay raises the ValueError the
    eager call would have raised.

    Returns
    -------
    GraphMemory
        A context manager; ``nbytes`` and ``calls`` say what it holds, ``release()`` lets it go.

    Raises
    ------
    RuntimeError
        Before queuing anything, under capture: from ``cuattn.decode`` with ``cuattn.decode.STEAL``;
        from ``cuattn.gla`` with ``cu_seqlens`` on the device (offsets are read on the host); from
        any cuattn call captured outside a ``graph_memory`` block.

    Examples
    --------
    >>> import cupy, cuattn                                         # doctest: +SKIP
    >>> q = k = v = cupy.random.standard_normal((1, 8, 256, 64)).astype(cupy.float16)  # doctest: +SKIP
    >>> stream = cupy.cuda.Stream(non_blocking=True)                # doctest: +SKIP
    >>> with stream, cuattn.graph_memory() as memory:               # doctest: +SKIP
    ...     stream.begin_capture()
    ...     o = cuattn.attention(q, k, v, causal=True)
    ...     graph = stream.end_capture()
    >>> q[...] = cupy.random.standard_normal(q.shape)               # doctest: +SKIP
    >>> graph.launch(stream); stream.synchronize()                  # doctest: +SKIP
    """
    return GraphMemory()


def recording() -> bool:
    """Whether a captured cuattn call is running on this thread (plans and caches are bypassed)."""
    return getattr(_state, "active", False)


def enter(op: str, x, refuse: str | None = None):
    """None unless ``x`` is a CuPy array and the current stream is capturing; then a context
    manager to run the call in (its allocations recorded in the innermost ``graph_memory``, the
    thread's capture mode relaxed), or RuntimeError: ``refuse`` (why ``op`` cannot be captured),
    or no ``graph_memory`` block."""
    cupy = sys.modules.get("cupy")
    if cupy is None or not isinstance(x, cupy.ndarray) or getattr(_state, "active", False):
        return None
    if not cupy.cuda.get_current_stream().is_capturing():
        return None
    if refuse is not None:
        raise CaptureRefused(f"cuattn.{op} cannot be captured in a CUDA graph: {refuse}. Call it outside "
                             "the capture (nothing was queued on the capturing stream).")
    scopes = getattr(_state, "scopes", None)
    if not scopes:
        raise RuntimeError(
            f"cuattn.{op} is being captured in a CUDA graph (the current stream is capturing): capture "
            "inside `with cuattn.graph_memory() as memory:` and keep `memory` as long as the graph, so "
            "the buffers the captured kernels use stay allocated (nothing was queued).")
    return _Recording(scopes[-1], cupy)


class _Recording:
    """A captured call's context: CuPy allocations recorded in ``memory``, capture mode relaxed."""

    def __init__(self, memory: GraphMemory, cupy):
        self.memory, self.cupy = memory, cupy

    def __enter__(self):
        blocks, base = self.memory._blocks, self.cupy.cuda.get_allocator()

        def allocate(size):
            mem = base(size)
            blocks.append((mem, int(size)))
            return mem

        self._start = (len(self.memory._blocks), len(self.memory._checks))
        self._mode = _exchange_capture_mode(_RELAXED)
        self._allocator = self.cupy.cuda.using_allocator(allocate)
        try:
            self._allocator.__enter__()
        except BaseException:
            _exchange_capture_mode(self._mode)
            raise
        _state.active = True
        return self

    def __exit__(self, *exc):
        _state.active = False
        self._allocator.__exit__(*exc)
        _exchange_capture_mode(self._mode)
        if exc[0] is None:
            self.memory.calls += 1
        elif issubclass(exc[0], CaptureRefused):  # planned, then refused: nothing queued uses it
            del self.memory._blocks[self._start[0]:]
            del self.memory._checks[self._start[1]:]


def checked(flags, raise_for) -> None:
    """Register a captured call's device value-check flags with the graph_memory recording it
    (the innermost: see ``enter``): ``GraphMemory.check()`` calls ``raise_for(host copy of
    flags)`` where any is set."""
    memory = _state.scopes[-1]
    memory._checks.append((memory.calls, flags, raise_for))


_RELAXED = 2  # CU_STREAM_CAPTURE_MODE_RELAXED


def _exchange_capture_mode(mode: int) -> int:
    """Set this thread's stream-capture interaction mode; return the one it had."""
    from ._cuda import driver_function

    value = ctypes.c_int(mode)
    status = driver_function("cuThreadExchangeStreamCaptureMode", (ctypes.POINTER(ctypes.c_int),))(ctypes.byref(value))
    if status != 0:
        raise RuntimeError(f"cuThreadExchangeStreamCaptureMode failed ({status})")
    return value.value


_SIDE: dict = {}  # device id -> a non-blocking stream for uploads during a capture


def _side_stream(cupy):
    device = cupy.cuda.Device().id
    side = _SIDE.get(device)
    if side is None:
        side = _SIDE[device] = cupy.cuda.Stream(non_blocking=True)
    return side


_NOT_CAPTURING = contextlib.nullcontext()


def eager():
    """A context for work that must run now, not at replay: buffers cached across calls that
    are filled once (zeroed counters, constants) and waited for with the current stream's
    synchronize. Inside a captured call it is the side stream (a CuPy stream as a context makes
    itself current: work on it runs at once, and a relaxed capture allows its synchronize);
    elsewhere it changes nothing."""
    if not getattr(_state, "active", False):
        return _NOT_CAPTURING
    from ._backend import require_cupy

    return _side_stream(require_cupy())


def upload(raw: bytes):
    """``raw`` in a new device array (recorded by the capture's allocator), copied on a side
    stream and waited for: the capturing stream may not take a host-to-device copy."""
    from ._backend import require_cupy

    cupy = require_cupy()
    out = cupy.empty(len(raw), dtype=cupy.uint8)
    side = _side_stream(cupy)
    host = np.frombuffer(raw, dtype=np.uint8).copy()
    cupy.cuda.runtime.memcpyAsync(out.data.ptr, host.ctypes.data, host.size,
                                  cupy.cuda.runtime.memcpyHostToDevice, side.ptr)
    side.synchronize()
    return out
