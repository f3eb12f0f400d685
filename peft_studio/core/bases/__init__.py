"""The frozen bases, looked up by name (or a local checkpoint folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import BaseLoadError, ConfigError
from .frozen import FrozenBase, Tokenizer, tensors_fingerprint
from .seed_pooled import SeedPooledBase
from .sites import Block, Site
from .tiny import TinyBase

TOY_BASES: dict[str, type[FrozenBase]] = {"seed-pooled": SeedPooledBase, "tiny": TinyBase}
PRETRAINED = ("minilm",)


def base_names() -> list[str]:
    return [*TOY_BASES, *PRETRAINED]


def uses_dataset_vocabulary(name: str) -> bool:
    """Toy bases build their vocabulary from the training texts; pretrained ones ship a tokenizer."""
    return name in TOY_BASES


def create_base(name: str, tokenizer: Tokenizer | None = None, **options: Any) -> FrozenBase:
    """A fresh frozen base. Toy bases need the dataset's tokenizer; pretrained ones bring theirs."""
    if name in TOY_BASES:
        if tokenizer is None:
            raise ConfigError(f"base {name!r} needs a dataset tokenizer")
        try:
            return TOY_BASES[name](tokenizer, **options)
        except TypeError as exc:
            raise ConfigError(f"base {name!r}: {exc}") from None
    if name in PRETRAINED or Path(name).expanduser().is_dir():
        from .pretrained import load_pretrained  # torch-only loader; imported on demand

        return load_pretrained(name)
    if any(sep in name for sep in "/\\.") or name.startswith("~"):
        raise BaseLoadError(f"{name}: no such folder (a checkpoint folder needs config.json and model.safetensors)")
    raise ConfigError(f"unknown base {name!r} (choose from {', '.join(base_names())}, or a checkpoint folder)")


__all__ = ["Block", "FrozenBase", "Site", "Tokenizer", "base_names", "create_base", "tensors_fingerprint",
           "uses_dataset_vocabulary"]
