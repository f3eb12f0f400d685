"""Setups shipped with the app (resources/setups): the seed example and the lessons."""

from __future__ import annotations

from ..data import TextDataset
from ..errors import ConfigError
from ..files.resources import resource_files, resource_path
from ..model.experiment import Setup
from ..runs.train import TrainSettings

SEED_EXAMPLE = "seed-example"  # the seed's Adapter run, shipped as a setup file


def example_names() -> list[str]:
    return [p.stem for p in resource_files("setups", "*.json")]


def load_example(name: str) -> tuple[Setup, TextDataset, TrainSettings]:
    """A shipped setup by name, read and checked like any setup file."""
    from ..files.setup_file import load_setup

    path = resource_path("setups", f"{name}.json")
    if not path.is_file():
        raise ConfigError(f"no shipped example {name!r} (have: {', '.join(example_names()) or 'none'})")
    return load_setup(path)
