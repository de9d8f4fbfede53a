"""cuattn/_numba_cache.py: Numba's disk cache sees edits of the files a cached kernel calls into."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import cuattn
from cuattn import _numba_cache

PACKAGE = Path(cuattn.__file__).resolve().parent


def test_sources_list_every_module_with_cached_kernels():
    """Every module of the package with cached Numba functions is in SOURCES (and calls guard)."""
    cached = sorted(p.name for p in PACKAGE.glob("*.py") if re.search(r"^@.*cache=True", p.read_text(), re.M))
    assert cached and sorted(_numba_cache.SOURCES) == cached
    for name in cached:
        assert "_numba_cache.guard(globals())" in (PACKAGE / name).read_text(), name


def test_guard_sees_an_edit_of_a_called_file(tmp_path):
    """A cached kernel in a.py calls a cached function of b.py; b.py is edited, a.py is not. Numba
    alone loads a.py's old binary (numba/numba#1833: checked by hand, the old value comes back);
    with guard over both files the edit shows in the next process, and the process after it
    loads from the cache again (no needless recompile)."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "b.py").write_text("from numba import njit\n\n\n@njit(cache=True)\ndef inc():\n    return 1\n")
    (pkg / "a.py").write_text(textwrap.dedent("""\
        import os

        from numba import njit

        from cuattn import _numba_cache
        from .b import inc


        @njit(cache=True)
        def f():
            return inc() + 10


        here = os.path.dirname(__file__)
        _numba_cache.guard(globals(), [os.path.join(here, "a.py"), os.path.join(here, "b.py")])
        """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(PACKAGE.parent)]),
               NUMBA_CACHE_DIR=str(tmp_path / "numba_cache"))

    def run():
        script = "import pkg.a as a; print(a.f(), sum(a.f.stats.cache_hits.values()))"
        out = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                             check=True).stdout.split()
        return int(out[0]), int(out[1])

    assert run() == (11, 0)  # compiled, saved
    assert run() == (11, 1)  # loaded
    (pkg / "b.py").write_text((pkg / "b.py").read_text().replace("return 1", "return 2"))
    assert run() == (12, 0)  # b.py's edit seen: compiled again
    assert run() == (12, 1)  # and loaded after that
