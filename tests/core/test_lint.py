"""`ruff check` is part of the suite: a lint error fails CI like any other defect."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_check_passes_on_the_whole_tree():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "peft_studio", "tests", "benchmarks"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
