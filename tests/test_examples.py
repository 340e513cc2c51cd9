"""Every script of docs/examples runs, exits 0 and prints its checks: the theory guide cannot go stale.

Each script asserts its own numerical statements (against exact oracles or within stated
standard errors) and prints one ``check: … -> ok`` line per statement.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.py"))
GUIDE = (ROOT / "docs" / "theory.md").read_text()


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_and_prints_its_checks(script):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    checks = [line for line in out.stdout.splitlines() if line.startswith("check: ")]
    assert checks and all(line.endswith("-> ok") for line in checks), out.stdout


def test_every_example_is_linked_from_the_guide():
    assert len(EXAMPLES) >= 10
    for script in EXAMPLES:
        assert f"examples/{script.name}" in GUIDE, script.name
