"""The AdapterHub reference environment: `adapters` pins transformers 4.x, which cannot share the test
venv with the transformers 5 that PEFT needs, so it gets a venv of its own (built once, then reused).

Torch is not installed again: a .pth file appends the test venv's torch folder to the reference venv's
path, after its own packages, so its transformers 4.57 wins over the test venv's transformers 5."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import torch

PINS = ("adapters==1.3.0", "transformers==4.57.6")


def cache_dir() -> Path:
    root = os.environ.get("PEFT_STUDIO_REFERENCE_DIR") or Path.home() / ".cache" / "peft-studio-tests"
    return Path(root) / ("adapterhub-" + "-".join(pin.split("==")[1] for pin in PINS))


def ready() -> bool:
    """Whether the reference venv is built already (python() then returns at once)."""
    return (cache_dir() / "ready").is_file()


def python() -> Path:
    """The reference venv's interpreter; builds the venv on first use (about 15 s with a warm pip cache)."""
    folder = cache_dir()
    interpreter = folder / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    ready = folder / "ready"
    if ready.is_file():
        return interpreter
    venv.EnvBuilder(with_pip=True, clear=True).create(folder)
    done = subprocess.run([str(interpreter), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PINS],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"cannot build the AdapterHub reference venv in {folder}:\n{done.stderr[-2000:]}")
    site = subprocess.run([str(interpreter), "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "studio_torch.pth").write_text(str(Path(torch.__file__).resolve().parent.parent) + "\n")
    ready.write_text("\n".join(PINS) + "\n")
    return interpreter
