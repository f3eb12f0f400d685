"""A regular (non-editable) install works away from the checkout: build the wheel, install it into a
temporary folder, and train on a built-in dataset from another directory with only that folder on the path."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What the build reads from the checkout; copied so the build's build/ and *.egg-info stay out of the tree.
SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "peft_studio", "resources")
SHIPPED = ("datasets/intents.csv", "datasets/sentiment.csv", "datasets/word-order.csv", "icons/lock.png")

# Run the package as `python -m peft_studio` would, after saying where it and its data were imported from.
RUN = """
import runpy, sys
import peft_studio
from peft_studio.core.files.resources import resources_root
print("PACKAGE", peft_studio.__file__)
print("RESOURCES", resources_root())
sys.argv = ["peft_studio", *sys.argv[1:]]
runpy.run_module("peft_studio", run_name="__main__", alter_sys=True)
"""


def _pip(*args: str, cwd: Path) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    result = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


def test_the_wheel_ships_its_data_and_trains_away_from_the_checkout(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in SOURCES:
        item = ROOT / name
        if item.is_dir():
            shutil.copytree(item, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(item, source / name)
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(tmp_path / "dist"), str(source),
         cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("peft_studio-*.whl")

    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in SHIPPED:
        assert f"peft_studio/resources/{shipped}" in names
    assert not any("screenshots/" in name for name in names)  # README art stays out
    # Every module of the checkout ships (the package list in setup.py misses none).
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "peft_studio").rglob("*.py")}
    assert modules - names == set()
    _check_license(zipfile.ZipFile(wheel), names)

    site = tmp_path / "site"
    _pip("install", "--no-deps", "--no-index", "-q", "--target", str(site), str(wheel), cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(site)  # only the installed copy; the venv's editable finder comes after it
    result = subprocess.run([sys.executable, "-c", RUN, "train", "--dataset", "intents", "--steps", "3"],
                            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    package = Path(re.search(r"^PACKAGE (.+)$", result.stdout, re.M).group(1))
    resources = Path(re.search(r"^RESOURCES (.+)$", result.stdout, re.M).group(1))
    assert package.is_relative_to(site), f"imported the checkout, not the wheel: {package}"
    assert resources == site / "peft_studio" / "resources"
    assert re.search(r"^step=\d+ loss=\d+\.\d+", result.stdout, re.M), result.stdout


def _check_license(wheel: zipfile.ZipFile, names: set[str]) -> None:
    """The wheel's metadata says pyproject's licence and carries the LICENSE file, whose text is that licence."""
    declared = re.search(r'^license = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.M)[1]
    metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert f"License-Expression: {declared}" in metadata.splitlines()
    (shipped,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert wheel.read(shipped) == (ROOT / "LICENSE").read_bytes()
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").splitlines()[0] == f"{declared} License"


def test_the_sdist_carries_the_license(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    (source / "peft_studio").mkdir()  # the package list needs a package; the sdist's files are what is checked
    (source / "peft_studio" / "__init__.py").write_text("")
    (source / "resources").mkdir()
    build = f"from setuptools import build_meta; print(build_meta.build_sdist({str(tmp_path / 'sdist')!r}))"
    result = subprocess.run([sys.executable, "-c", build], cwd=source, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    (archive,) = (tmp_path / "sdist").glob("peft_studio-*.tar.gz")
    with tarfile.open(archive) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}
        assert tar.extractfile(members["LICENSE"]).read() == (ROOT / "LICENSE").read_bytes()
        assert "License-Expression: MIT" in tar.extractfile(members["PKG-INFO"]).read().decode().splitlines()
