"""Setups shipped with the app (resources/setups): the seed example and the lessons."""

from __future__ import annotations

from pathlib import Path

from .data import TextDataset
from .errors import ConfigError
from .experiment import Setup
from .train import TrainSettings

SEED_EXAMPLE = "seed-example"


def _setups_folder() -> Path:
    packaged = Path(__file__).resolve().parents[1] / "resources" / "setups"  # inside an installed wheel
    checkout = Path(__file__).resolve().parents[2] / "resources" / "setups"  # a source checkout
    return packaged if packaged.is_dir() else checkout


def example_names() -> list[str]:
    return sorted(p.stem for p in _setups_folder().glob("*.json"))


def load_example(name: str) -> tuple[Setup, TextDataset, TrainSettings]:
    """A shipped setup by name, read and checked like any setup file."""
    from .setup_file import load_setup

    path = _setups_folder() / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"no shipped example {name!r} (have: {', '.join(example_names()) or 'none'})")
    return load_setup(path)
