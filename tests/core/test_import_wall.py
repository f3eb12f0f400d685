"""The import contract: the core never imports a Qt library (it must run headless, in scripts and tests) nor the
GUI or CLI; the GUI never imports the CLI. Checked on the source (every import statement, also inside functions)
and at run time (what importing every module actually loads)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "peft_studio"
QT = ("PySide6", "shiboken6", "pyqtgraph", "superqt", "PyQt5", "PyQt6")
# package -> module prefixes its files must not import
WALLS = {
    "peft_studio.core": (*QT, "peft_studio.gui", "peft_studio.cli"),
    "peft_studio.gui": ("peft_studio.cli",),
}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path) -> set[str]:
    """Every module an import statement in ``path`` names, relative imports resolved against ``root``'s package."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # `from pkg import sub` may import the submodule pkg.sub
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def violations(root: Path, walls: dict[str, tuple[str, ...]]) -> list[str]:
    """``file: module`` for every import that crosses a wall."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        name = _module_name(path, root)
        for inside, forbidden in walls.items():
            if name != inside and not name.startswith(inside + "."):
                continue
            crossing = {m for m in imported_modules(path, root) if _under(m, forbidden)}
            # `from PySide6.QtCore import Qt` is one crossing (PySide6.QtCore), not two
            for module in sorted(m for m in crossing if not _under(m, tuple(crossing - {m}))):
                bad.append(f"{path.relative_to(root.parent)}: {module}")
    return bad


def test_no_source_file_imports_across_a_wall():
    assert violations(PACKAGE, WALLS) == []


def test_the_scan_sees_absolute_relative_and_nested_imports(tmp_path):
    root = tmp_path / "peft_studio"
    (root / "core" / "data").mkdir(parents=True)
    (root / "gui").mkdir()
    for folder in (root, root / "core", root / "core" / "data", root / "gui"):
        (folder / "__init__.py").write_text("")
    (root / "core" / "data" / "a.py").write_text("def f():\n    from PySide6.QtCore import Qt\n")
    (root / "core" / "b.py").write_text("from ..gui import window\nimport numpy\n")
    (root / "gui" / "c.py").write_text("from .. import cli\nfrom . import theme\n")
    (root / "gui" / "d.py").write_text("import peft_studio.cli as c\n")
    assert violations(root, WALLS) == [
        "peft_studio/core/b.py: peft_studio.gui",
        "peft_studio/core/data/a.py: PySide6.QtCore",
        "peft_studio/gui/c.py: peft_studio.cli",
        "peft_studio/gui/d.py: peft_studio.cli",
    ]


CHECK = """
import importlib, pkgutil, sys
import peft_studio.core as core
for info in pkgutil.walk_packages(core.__path__, "peft_studio.core."):
    importlib.import_module(info.name)
import peft_studio.cli
bad = sorted(m for m in sys.modules if m.split(".")[0] in QT)
print(",".join(bad))
"""

GUI_CHECK = """
import importlib, pkgutil, sys
import peft_studio.gui as gui
for info in pkgutil.walk_packages(gui.__path__, "peft_studio.gui."):
    importlib.import_module(info.name)
print("peft_studio.cli" in sys.modules)
"""


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", f"QT = {QT!r}\n{code}"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_the_core_and_cli_loads_no_qt():
    assert _run(CHECK) == ""


def test_importing_the_gui_loads_no_cli():
    assert _run(GUI_CHECK) == "False"
