"""The scripts in examples/ run and pass their own checks (on the CPU here; on a GPU machine the
ones that pick a device automatically run there)."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CASES = [  # (script, arguments): small sizes where the script has them
    ("quickstart.py", []),
    ("precision.py", ["--small", "--device", "cpu"]),
    ("decode_alibi.py", ["--device", "cpu", "--length", "3000"]),
    ("gla_generation.py", ["--device", "cpu"]),
]


def test_every_example_is_covered():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(script for script, _ in CASES)


@pytest.mark.parametrize("script,args", CASES, ids=[script for script, _ in CASES])
def test_example_runs_and_passes_its_checks(script, args):
    result = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
