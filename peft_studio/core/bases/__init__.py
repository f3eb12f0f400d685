"""The frozen bases, looked up by name (or a local checkpoint folder). The registry is the one list."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BaseLoadError, ConfigError, PeftStudioError
from . import architectures
from .decoder import TinyDecoderBase
from .frozen import FrozenBase, Tokenizer, TrainDefaults, tensors_fingerprint
from .seed_pooled import SeedPooledBase
from .sites import Block, Site
from .tiny import TinyBase


@dataclass(frozen=True)
class BaseEntry:
    """A named base: its class (the family description) and how to build one."""

    name: str
    describe: Callable[[], type[FrozenBase]]  # the class, imported only when asked (pretrained loaders are heavy)
    build: Callable[..., FrozenBase]  # (tokenizer or None, **base options) -> a fresh frozen base
    uses_dataset_vocabulary: bool  # toy bases build their vocabulary from the texts; pretrained ones ship one
    summary: str

    @property
    def cls(self) -> type[FrozenBase]:
        return self.describe()


def _load_pretrained(name: str) -> Callable[..., FrozenBase]:
    def build(tokenizer: Tokenizer | None = None, **options: Any) -> FrozenBase:
        from .pretrained import load_pretrained  # torch-only loader; imported on demand

        return load_pretrained(name, **_pretrained_options(name, options))

    return build


def _pretrained_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's one base option, `pooling` (mean, cls or BERT's pooler); anything else is refused."""
    unknown = sorted(set(options) - {"pooling"})
    if unknown:
        raise ConfigError(f"base {name!r} takes only the base option pooling (got {', '.join(unknown)})")
    return options


def _pretrained_class() -> type[FrozenBase]:
    from .pretrained import PretrainedBase

    return PretrainedBase


def _folder_class(folder: Path) -> type[FrozenBase]:
    """A checkpoint folder's class: its config.json's model_type decides (a decoder family or BERT)."""
    from .decoder_checkpoint import DecoderCheckpointBase, is_decoder_folder

    return DecoderCheckpointBase if is_decoder_folder(folder) else _pretrained_class()


def load_folder(name: str, progress: Any = None, cancelled: Any = None,
                options: dict[str, Any] | None = None) -> FrozenBase:
    """A checkpoint folder as a base: a decoder (Llama, Mistral, Qwen2, GPT-2; `progress(fraction, text)` and
    `cancelled()` follow the weights as they are read; no base options) or a BERT-style encoder (its one
    option, pooling)."""
    from .decoder_checkpoint import is_decoder_folder, load_decoder

    options = options or {}
    if is_decoder_folder(Path(name).expanduser()):
        if options:
            raise ConfigError(f"a decoder checkpoint folder takes no base options (got {', '.join(options)})")
        return load_decoder(name, progress, cancelled)
    from .pretrained import load_pretrained

    return load_pretrained(name, **_pretrained_options(name, options))


BASES: dict[str, BaseEntry] = {}


def register_base(entry: BaseEntry) -> None:
    """Add a base to the one list that the CLI, the window and the tests iterate over."""
    BASES[entry.name] = entry


register_base(BaseEntry("seed-pooled", lambda: SeedPooledBase, SeedPooledBase, True, "the seed's FrozenBaseEncoder"))
register_base(BaseEntry("tiny", lambda: TinyBase, TinyBase, True, "a small random transformer encoder"))
register_base(BaseEntry("minilm", _pretrained_class, _load_pretrained("minilm"), False, "all-MiniLM-L6-v2, pretrained"))
register_base(BaseEntry("tiny-decoder", lambda: TinyDecoderBase, TinyDecoderBase, True,
                        "a small random Llama-style decoder (last-token classification)"))
for _name in architectures.shipped():  # config.json facts only: built on the meta device, inspect-only
    register_base(BaseEntry(_name, functools.partial(architectures.shipped_class, _name),
                            functools.partial(architectures.build_shipped, _name), False,
                            f"{_name} architecture on the meta device (shapes only, no weights)"))


def base_names() -> list[str]:
    return list(BASES)


def _path_kind(name: str) -> str | None:
    """A name that is not a registered base, as a path: "config" (a config.json, or a folder holding only one),
    "folder" (a checkpoint folder) or None. A name the file system refuses outright (too long, a NUL) is an
    unknown base, said as such."""
    try:
        if architectures.is_config_spec(name):
            return "config"
        return "folder" if Path(name).expanduser().is_dir() else None
    except (OSError, ValueError) as exc:
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise ConfigError(f"unknown base {shown!r}: not a base name, and not a path this system can open "
                          f"({getattr(exc, 'strerror', None) or exc})") from None


def _is_folder_spec(name: str) -> bool:
    return any(sep in name for sep in "/\\.") or name.startswith("~")


def base_class(name: str) -> type[FrozenBase]:
    """The class describing a base, without building it (training defaults, default method)."""
    if name in BASES:
        return BASES[name].cls
    kind = _path_kind(name)
    if kind == "config":
        return architectures.config_class(name)
    if kind == "folder":
        return _folder_class(Path(name).expanduser())
    if _is_folder_spec(name):
        raise BaseLoadError(f"{name}: no such folder (a checkpoint folder needs config.json and model.safetensors)")
    raise ConfigError(f"unknown base {name!r} (choose from {', '.join(base_names())}, or a checkpoint folder)")


def is_architecture(name: str) -> bool:
    """True for a base built on the meta device (a shipped architecture or a config.json): shapes only."""
    try:
        return name in architectures.shipped() or _path_kind(name) == "config"
    except ConfigError:
        return False


def train_defaults(name: str) -> TrainDefaults:
    """A base's training defaults; an unknown name gets the generic ones (its error comes at build time)."""
    try:
        return base_class(name).train_defaults
    except PeftStudioError:
        return TrainDefaults()


def default_dataset(name: str) -> str:
    """The built-in dataset a base runs on when none is named (the seed's six sentences for the seed's base)."""
    try:
        return base_class(name).default_dataset
    except PeftStudioError:
        return FrozenBase.default_dataset


def uses_dataset_vocabulary(name: str) -> bool:
    entry = BASES.get(name)
    return entry is not None and entry.uses_dataset_vocabulary


def create_base(name: str, tokenizer: Tokenizer | None = None, **options: Any) -> FrozenBase:
    """A fresh frozen base. Toy bases need the dataset's tokenizer; pretrained ones bring theirs."""
    entry = BASES.get(name)
    if entry is not None:
        if entry.uses_dataset_vocabulary and tokenizer is None:
            raise ConfigError(f"base {name!r} needs a dataset tokenizer")
        try:
            return entry.build(tokenizer, **options) if entry.uses_dataset_vocabulary else entry.build(**options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"base {name!r}: {exc}") from None
    kind = _path_kind(name)
    if kind == "config":
        return architectures.load_config_base(name, **options)
    if kind == "folder":
        return load_folder(name, options=options)
    if _is_folder_spec(name):
        raise BaseLoadError(f"{name}: no such folder (a checkpoint folder needs config.json and model.safetensors)")
    raise ConfigError(f"unknown base {name!r} (choose from {', '.join(base_names())}, or a checkpoint folder)")


__all__ = ["BASES", "BaseEntry", "Block", "FrozenBase", "Site", "Tokenizer", "TrainDefaults", "base_class",
           "base_names", "create_base", "default_dataset", "load_folder", "register_base", "tensors_fingerprint",
           "train_defaults", "uses_dataset_vocabulary"]
