"""Numba's disk cache, made to see cuattn's CPU kernel sources as one.

Numba keys a cached function (``@njit(cache=True)``) on the time stamp and size of the file that
defines it. It does not see an edit to a function it calls from another file (numba/numba#1833,
open; Numba's documentation lists it under the cache's limitations): a kernel of _cpu_decode.py
that inlines _bits16.py's conversions or _cpu_attention.py's exp2 would load its old binary after
an edit of those files alone (a ``git pull`` into an editable install), and run the old code.

``guard`` runs at the end of each module of Numba kernels: where the digest of all those modules'
sources differs from the one written beside the module's cache, it empties the cache index of each
cached function the module defines (Numba's ``Cache.flush``), so they compile again, then writes
the new digest. Any edit of any of the files costs each module one recompile, no more.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path

# The modules with Numba kernels, and those they call into (tests/test_numba_cache.py checks that
# every module of the package with cached Numba functions is listed)
SOURCES = ("_bits16.py", "_cpu_attention.py", "_cpu_decode.py", "_cpu_gla.py")

_log = logging.getLogger("cuattn")


def sources_digest(paths) -> str:
    """sha256 over the names and bytes of the files ``paths``, in order."""
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        h.update(p.name.encode() + b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _package_digest() -> str:
    """sources_digest of the package's SOURCES, once per process (each of the four modules asks)."""
    here = Path(__file__).resolve().parent
    return sources_digest([here / name for name in SOURCES])


def guard(namespace: dict, sources=None) -> bool:
    """Flush the disk caches of the cached Numba functions defined in the module whose globals are
    ``namespace`` if ``sources`` (paths; default: the package's ``SOURCES``) changed since their
    cache was last guarded. Returns True where it flushed. Never raises: a cache it cannot read
    or write is left to Numba (which then compiles in memory or warns as it does)."""
    try:
        from numba.core.caching import Cache
        from numba.core.dispatcher import Dispatcher

        module = namespace["__name__"]
        caches = [obj._cache for obj in list(namespace.values())
                  if isinstance(obj, Dispatcher) and getattr(obj.py_func, "__module__", None) == module
                  and isinstance(getattr(obj, "_cache", None), Cache)]
        if not caches:
            return False
        digest = sources_digest(sources) if sources is not None else _package_digest()
        stem = Path(namespace["__file__"]).stem
        marker = Path(caches[0].cache_path) / f"{stem}.cuattn-sources"
        try:
            if marker.read_text() == digest:
                return False
        except OSError:
            pass
        for cache in caches:
            cache.flush()
        tmp = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
        tmp.write_text(digest)
        os.replace(tmp, marker)
        _log.debug("Numba cache of %s flushed: its CPU kernel sources changed", module)
        return True
    except Exception as exc:  # the cache is an optimisation: never fail an import over it
        _log.debug("Numba cache guard skipped for %s: %r", namespace.get("__name__"), exc)
        return False
