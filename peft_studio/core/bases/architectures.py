"""Real architectures from their config.json, built on the meta device: shapes and counts, no weights.

Shipped files (resources/architectures/NAME.json) are the models' published config.json facts and
register as bases by file name (`llama-3-8b`); `--base PATH/config.json`, or a folder holding a
config.json and no weights, reads any other Llama / Mistral / Qwen2 / GPT-2 (or BERT) config.

A meta-device base has every tensor's shape and dtype but no storage, so Llama-3-70B is described in
well under a second and a few MB. It can be inspected (census, counts, diagram, memory) but not trained
or run (`FrozenBase.on_meta_device`). Its tokenizer is a stand-in (`HashTokenizer`): the real one is
not shipped, and only sequence lengths matter without weights.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import BaseLoadError, ConfigError
from ..files.jsonfile import read_json_object
from ..files.resources import resource_files
from .decoder import DecoderBase, HashTokenizer
from .decoder_config import DecoderConfig, read_decoder_config
from .decoder_families import FAMILIES
from .encoder import Encoder
from .frozen import FrozenBase
from .meta_device import on_meta

FOLDER = "architectures"
SUPPORTED = (*FAMILIES, "bert")


def _model_type(raw: Mapping[str, Any], where: str) -> str:
    model_type = raw.get("model_type")
    if model_type is None:
        raise BaseLoadError(f"{where}: missing model_type (supported: {', '.join(SUPPORTED)})")
    if model_type not in SUPPORTED:
        raise BaseLoadError(f"{where}: model_type {model_type!r} is not supported (supported: {', '.join(SUPPORTED)})")
    return model_type


def decoder_config(raw: Mapping[str, Any], where: str) -> DecoderConfig:
    """A DecoderConfig from a config.json of a family in the table; every problem names its field."""
    return read_decoder_config(raw, where)


def build_from_config(raw: Mapping[str, Any], where: str, name: str, title: str = "") -> FrozenBase:
    """The base a config.json describes, on the meta device (no memory for weights, no random draws)."""
    model_type = _model_type(raw, where)
    if model_type == "bert":
        from .pretrained import _encoder_config

        # BertModel(config) has BERT's pooler (add_pooling_layer defaults to True): PEFT's `dense` reaches it too
        cfg = _encoder_config(dict(raw), Path(where.removesuffix("/config.json")), pooler=True)
        with on_meta():
            base: FrozenBase = Encoder(cfg, HashTokenizer(cfg.vocab_size, min(128, cfg.max_positions)))
        base.name, base.title = name, f"{title or name} (BERT encoder)"
        base.on_meta_device = True
        return base
    cfg = decoder_config(raw, where)
    with on_meta():
        return DecoderBase(cfg, HashTokenizer(cfg.vocab_size), name, title or name)


# ---- files -------------------------------------------------------------------------------------
def _read(path: Path, where: str) -> dict[str, Any]:
    return read_json_object(path, where, BaseLoadError)


def shipped() -> dict[str, Path]:
    """Shipped architecture files by base name (file stem)."""
    return {path.stem: path for path in resource_files(FOLDER, "*.json")}


@functools.cache
def _shipped_raw(name: str) -> dict[str, Any]:
    return _read(shipped()[name], f"{FOLDER}/{name}.json")


def _title(raw: Mapping[str, Any], fallback: str) -> str:
    source = raw.get("_name_or_path")
    return source if isinstance(source, str) and source else fallback


def build_shipped(name: str, tokenizer: Any = None, **options: Any) -> FrozenBase:
    if options:
        raise ConfigError(f"base {name!r} takes no base options (got {', '.join(options)})")
    raw = _shipped_raw(name)
    return build_from_config(raw, f"{FOLDER}/{name}.json", name, _title(raw, name))


def shipped_class(name: str) -> type[FrozenBase]:
    return Encoder if _shipped_raw(name).get("model_type") == "bert" else DecoderBase


CHECKPOINT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                    "pytorch_model.bin.index.json", "tokenizer.json", "vocab.txt")


def is_config_spec(spec: str) -> bool:
    """A path to a config.json file, or a folder with a config.json and none of a checkpoint's files
    (a checkpoint folder that lost its weights is still a checkpoint folder, refused as such)."""
    path = Path(spec).expanduser()
    if spec.endswith(".json"):
        return True
    return path.is_dir() and (path / "config.json").is_file() and \
        not any((path / name).exists() for name in CHECKPOINT_FILES)


def config_path(spec: str) -> Path:
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise BaseLoadError(f"{spec}: no such file (give a config.json or a folder holding one)")
    return path


def load_config_base(spec: str, **options: Any) -> FrozenBase:
    """`--base PATH/config.json` (or a folder with only a config.json), on the meta device."""
    if options:
        raise ConfigError(f"a config.json base takes no base options (got {', '.join(options)})")
    path = config_path(spec)
    where = f"{path.parent.name}/{path.name}" if path.parent.name else path.name
    raw = _read(path, where)
    return build_from_config(raw, where, spec, _title(raw, path.parent.name or spec))


def config_class(spec: str) -> type[FrozenBase]:
    try:
        model_type = _read(config_path(spec), spec).get("model_type")
    except BaseLoadError:
        return DecoderBase  # the error is reported when the base is built
    return Encoder if model_type == "bert" else DecoderBase
