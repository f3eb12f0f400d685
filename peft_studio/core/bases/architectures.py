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

import torch

from ..errors import BaseLoadError, ConfigError
from ..files.jsonfile import read_json_object
from ..files.resources import resource_files
from . import config_limits
from .decoder import GPT2, LLAMA, DecoderBase, DecoderConfig, HashTokenizer
from .encoder import Encoder
from .frozen import FrozenBase

FOLDER = "architectures"
LLAMA_TYPES = ("llama", "mistral", "qwen2")
SUPPORTED = (*LLAMA_TYPES, "gpt2", "bert")
# transformers' defaults where a config.json may leave a field out
MAX_POSITIONS = {"llama": 2048, "mistral": 4096 * 32, "qwen2": 32768}


# config.json keys -> the kind of size config_limits bounds them by
SIZE_KINDS = {"vocab_size": "vocab", "n_embd": "width", "hidden_size": "width", "n_layer": "layers",
              "num_hidden_layers": "layers", "n_head": "heads", "num_attention_heads": "heads",
              "num_key_value_heads": "heads", "n_inner": "intermediate", "intermediate_size": "intermediate",
              "n_positions": "positions", "max_position_embeddings": "positions", "head_dim": "head_dim"}


def _int(raw: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    """A size, bounded by what real checkpoints use (config_limits says the bound in its message)."""
    return config_limits.size(raw, key, SIZE_KINDS[key], where, default=default)


def _float(raw: Mapping[str, Any], key: str, where: str, default: float) -> float:
    if key.endswith(("eps", "epsilon")):
        return config_limits.epsilon(raw, key, where, default)
    return config_limits.positive_number(raw, key, where, config_limits.ROPE_THETA_MAX, default)


def _bool(raw: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise BaseLoadError(f"{where}: {key} must be true or false (got {value!r})")
    return value


def _model_type(raw: Mapping[str, Any], where: str) -> str:
    model_type = raw.get("model_type")
    if model_type is None:
        raise BaseLoadError(f"{where}: missing model_type (supported: {', '.join(SUPPORTED)})")
    if model_type not in SUPPORTED:
        raise BaseLoadError(f"{where}: model_type {model_type!r} is not supported (supported: {', '.join(SUPPORTED)})")
    return model_type


def decoder_config(raw: Mapping[str, Any], where: str) -> DecoderConfig:
    """A DecoderConfig from a Llama / Mistral / Qwen2 / GPT-2 config.json; every problem names its field."""
    model_type = _model_type(raw, where)
    if model_type == "gpt2":
        width = _int(raw, "n_embd", where)
        values: dict[str, Any] = dict(
            style=GPT2, vocab_size=_int(raw, "vocab_size", where), hidden_size=width,
            num_layers=_int(raw, "n_layer", where), num_heads=_int(raw, "n_head", where),
            intermediate_size=_int(raw, "n_inner", where, 4 * width) if raw.get("n_inner") is not None else 4 * width,
            max_positions=_int(raw, "n_positions", where, 1024),
            norm_eps=_float(raw, "layer_norm_epsilon", where, 1e-5),
            hidden_act=raw.get("activation_function", "gelu_new"),
            tie_word_embeddings=_bool(raw, "tie_word_embeddings", where, True))
        values["num_kv_heads"] = values["num_heads"]
        heads_field, kv_field = "n_head", "n_head"
    elif model_type in LLAMA_TYPES:
        heads = _int(raw, "num_attention_heads", where)
        rope = _rope(raw, where)
        attention_bias = _bool(raw, "attention_bias", where, False) if model_type == "llama" else False
        values = dict(
            style=LLAMA, model_type=model_type, vocab_size=_int(raw, "vocab_size", where),
            hidden_size=_int(raw, "hidden_size", where), num_layers=_int(raw, "num_hidden_layers", where),
            num_heads=heads,
            num_kv_heads=_int(raw, "num_key_value_heads", where, heads)
            if raw.get("num_key_value_heads") is not None else heads,
            intermediate_size=_int(raw, "intermediate_size", where),
            max_positions=_int(raw, "max_position_embeddings", where, MAX_POSITIONS[model_type]),
            norm_eps=_float(raw, "rms_norm_eps", where, 1e-6), hidden_act=raw.get("hidden_act", "silu"),
            tie_word_embeddings=_bool(raw, "tie_word_embeddings", where, False),
            rope_theta=_float(raw, "rope_theta", where, rope if rope is not None else 10000.0),
            qkv_bias=model_type == "qwen2" or attention_bias, o_bias=attention_bias,
            mlp_bias=_bool(raw, "mlp_bias", where, False) if model_type == "llama" else False,
            head_dim=_int(raw, "head_dim", where) if raw.get("head_dim") is not None else 0)
        heads_field, kv_field = "num_attention_heads", "num_key_value_heads"
    else:
        raise BaseLoadError(f"{where}: model_type {model_type!r} is an encoder, not a decoder")
    act = values["hidden_act"]
    if not isinstance(act, str):
        raise BaseLoadError(f"{where}: hidden_act must be a string (got {act!r})")
    _check_decoder_sizes(values, raw, where, heads_field)
    try:
        return DecoderConfig(**values)
    except ValueError as exc:  # sizes that do not fit together; the message names the fields
        text = str(exc).replace("num_attention_heads", heads_field).replace("num_key_value_heads", kv_field)
        if model_type == "gpt2":
            text = text.replace("hidden_size", "n_embd")
        raise BaseLoadError(f"{where}: {text}") from None


def _rope(raw: Mapping[str, Any], where: str) -> float | None:
    """rope_theta from rope_parameters / rope_scaling, after checking them (their shape needs head_dim)."""
    heads = raw.get("num_attention_heads")
    width = raw.get("hidden_size")
    head_dim = raw.get("head_dim")
    if type(head_dim) is not int:
        head_dim = width // heads if type(width) is int and type(heads) is int and heads > 0 else 0
    positions = raw.get("max_position_embeddings")
    limit = positions if type(positions) is int and positions > 0 else config_limits.SIZE_LIMITS["positions"][0]
    return config_limits.rope_parameters(raw, where, head_dim, limit)


def _check_decoder_sizes(values: dict[str, Any], raw: Mapping[str, Any], where: str, heads_field: str) -> None:
    """Sizes that fit together (each alone is bounded already), and a model of a bounded size."""
    heads, width, head_dim = values["num_heads"], values["hidden_size"], values.get("head_dim") or 0
    if values["num_kv_heads"] > heads:
        raise BaseLoadError(f"{where}: num_key_value_heads ({values['num_kv_heads']}) is more than {heads_field} "
                            f"({heads})")
    if heads > width:
        raise BaseLoadError(f"{where}: {heads_field} ({heads}) is more than the width ({width})")
    dim = head_dim or width // heads
    q_width, kv_width = heads * dim, values["num_kv_heads"] * dim
    if q_width > config_limits.SIZE_LIMITS["width"][0]:
        raise BaseLoadError(f"{where}: {heads_field} x head_dim = {q_width:,} is wider than "
                            f"{config_limits.SIZE_LIMITS['width'][0]:,}")
    ff = values["intermediate_size"]
    per_layer = 2 * width * q_width + 2 * width * kv_width + 3 * width * ff
    positions = values["max_positions"] if values["style"] == GPT2 else 0
    lm_head = 0 if values["tie_word_embeddings"] else values["vocab_size"]
    config_limits.check_parameters(where, vocab=values["vocab_size"] + lm_head, width=width,
                                   layers=values["num_layers"], per_layer=per_layer, positions=positions)


def build_from_config(raw: Mapping[str, Any], where: str, name: str, title: str = "") -> FrozenBase:
    """The base a config.json describes, on the meta device (no memory for weights, no random draws)."""
    model_type = _model_type(raw, where)
    if model_type == "bert":
        from .pretrained import _encoder_config

        cfg = _encoder_config(dict(raw), Path(where.removesuffix("/config.json")))
        with torch.device("meta"):
            base: FrozenBase = Encoder(cfg, HashTokenizer(cfg.vocab_size, min(128, cfg.max_positions)))
        base.name, base.title = name, f"{title or name} (BERT encoder)"
        base.on_meta_device = True
        return base
    cfg = decoder_config(raw, where)
    with torch.device("meta"):
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


CHECKPOINT_FILES = ("model.safetensors", "pytorch_model.bin", "tokenizer.json", "vocab.txt")


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
