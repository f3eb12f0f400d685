"""The core never imports a Qt library: it must run headless, in scripts and tests."""

import subprocess
import sys

CHECK = """
import importlib, pkgutil, sys
import peft_studio.core as core
for info in pkgutil.walk_packages(core.__path__, "peft_studio.core."):
    importlib.import_module(info.name)
import peft_studio.cli
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("PySide6", "pyqtgraph", "superqt", "PyQt5", "PyQt6"))
print(",".join(bad))
"""


def test_importing_the_core_and_cli_loads_no_qt():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
