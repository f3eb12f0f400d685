"""A decoder's resolved settings (`DecoderConfig`) and how a config.json becomes one, driven by the family table.

Every problem names its field: a missing or mistyped size, a model_type the studio does not build (with the
supported ones), and a setting that would change the outputs but is not implemented (refused, never ignored).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import BaseLoadError
from . import config_limits
from .decoder_families import EVERY_LAYER, FAMILIES, LAYER_TYPES, ROTARY, DecoderFamily
from .pretrained import ACTIVATIONS  # noqa: F401  (importing it registers transformers' further activations)
from .rope import RopeSpec, rope_spec

LAYER_KINDS = ("full_attention", "sliding_attention")


@dataclass(frozen=True)
class DecoderConfig:
    """The shapes and settings of a decoder; `family` is a row of decoder_families.FAMILIES."""

    family: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    max_positions: int = 2048
    norm_eps: float = 1e-6
    hidden_act: str = "silu"
    tie_word_embeddings: bool = False
    rope: RopeSpec = field(default_factory=RopeSpec)
    head_dim: int = 0  # 0: hidden_size // num_heads
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    sliding_window: int | None = None
    sliding_layers: tuple[int, ...] = ()  # the layers whose attention is windowed
    attention_dropout: float = 0.0
    residual_dropout: float = 0.0
    embedding_dropout: float = 0.0
    scale_attention: bool = True  # scores / sqrt(head_dim) (GPT-2's scale_attn_weights can turn it off)
    scale_by_layer: bool = False  # GPT-2's scale_attn_by_inverse_layer_idx: scores / (layer + 1) too
    pad_token_id: int | None = None  # the embedding's padding_idx (its row gets no gradient under full tuning)
    attn_implementation: str = "sdpa"  # "sdpa" (transformers' default) or "eager" (the softmax written out)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"model_type {self.family!r} is not supported (supported: {', '.join(FAMILIES)})")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act {self.hidden_act!r} is not supported ({', '.join(ACTIVATIONS)})")
        if not self.head_dim and self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                             f"{self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_attention_heads {self.num_heads} is not divisible by num_key_value_heads "
                             f"{self.num_kv_heads}")
        if self.attn_implementation not in ("sdpa", "eager"):
            raise ValueError(f"attn_implementation must be sdpa or eager (got {self.attn_implementation!r})")
        if self.fam.fused_qkv and self.num_kv_heads != self.num_heads:
            raise ValueError("GPT-2 attention has as many key/value heads as query heads")
        if self.fam.positions == ROTARY and self.dim_per_head % 2:
            raise ValueError(f"head_dim {self.dim_per_head} is odd: rotary positions need an even head size")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id {self.pad_token_id} is outside the vocabulary (vocab_size "
                             f"{self.vocab_size})")

    @property
    def fam(self) -> DecoderFamily:
        return FAMILIES[self.family]

    @property
    def model_type(self) -> str:
        return self.family

    @property
    def style(self) -> str:
        """"llama" or "gpt2": the layout (memory model, diagram) the family follows."""
        return self.fam.style

    @property
    def rope_theta(self) -> float:
        return self.rope.theta

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    @property
    def q_width(self) -> int:
        return self.num_heads * self.dim_per_head

    @property
    def kv_width(self) -> int:
        return self.num_kv_heads * self.dim_per_head

    @property
    def grouped(self) -> bool:
        return self.num_kv_heads < self.num_heads

    def window(self, layer: int) -> int | None:
        """The sliding window of one layer's attention (None: it attends to every earlier token)."""
        return self.sliding_window if layer in self.sliding_layers else None


# ---- reading a config.json -----------------------------------------------------------------------------------
def _int(value: Any, key: str, where: str, low: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        what = "a positive integer" if low == 1 else f"an integer of at least {low}"
        raise BaseLoadError(f"{where}: {key} must be {what} (got {value!r})")
    return value


SIZE_KINDS = {"vocab_size": "vocab", "hidden_size": "width", "num_layers": "layers", "num_heads": "heads",
              "num_kv_heads": "heads", "intermediate_size": "intermediate", "head_dim": "head_dim",
              "max_positions": "positions"}


def _size(value: Any, name: str, key: str, where: str) -> int:
    """A size bounded by what real checkpoints use (config_limits says the bound in its message)."""
    return config_limits.size({key: value}, key, SIZE_KINDS[name], where)


def _epsilon(value: Any, key: str, where: str) -> float:
    return config_limits.epsilon({key: value}, key, where, 1e-6)


def _check_total(values: Mapping[str, Any], fam: DecoderFamily, where: str) -> None:
    """Sizes that fit together (each alone is bounded already), and a model of a bounded size."""
    heads, width = values["num_heads"], values["hidden_size"]
    heads_key = fam.keys["num_heads"]
    if values["num_kv_heads"] > heads:
        raise BaseLoadError(f"{where}: {fam.keys.get('num_kv_heads', heads_key)} ({values['num_kv_heads']}) is more "
                            f"than {heads_key} ({heads})")
    if heads > width:
        raise BaseLoadError(f"{where}: {heads_key} ({heads}) is more than the width ({width})")
    dim = values.get("head_dim") or width // heads
    q_width, kv_width = heads * dim, values["num_kv_heads"] * dim
    if q_width > config_limits.SIZE_LIMITS["width"][0]:
        raise BaseLoadError(f"{where}: {heads_key} x head_dim = {q_width:,} is wider than "
                            f"{config_limits.SIZE_LIMITS['width'][0]:,}")
    ff = values["intermediate_size"]
    per_layer = 2 * width * q_width + 2 * width * kv_width + 3 * width * ff
    positions = values["max_positions"] if fam.positions != ROTARY else 0
    lm_head = 0 if values["tie_word_embeddings"] else values["vocab_size"]
    config_limits.check_parameters(where, vocab=values["vocab_size"] + lm_head, width=width,
                                   layers=values["num_layers"], per_layer=per_layer, positions=positions)


def _bool(value: Any, key: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise BaseLoadError(f"{where}: {key} must be true or false (got {value!r})")
    return value


def _probability(value: Any, key: str, where: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 1:
        raise BaseLoadError(f"{where}: {key} must be a number in [0, 1) (got {value!r})")
    return float(value)


def model_family(raw: Mapping[str, Any], where: str) -> DecoderFamily:
    model_type = raw.get("model_type")
    supported = ", ".join(FAMILIES)
    if model_type is None:
        raise BaseLoadError(f"{where}: missing model_type (supported decoders: {supported})")
    if model_type not in FAMILIES:
        raise BaseLoadError(f"{where}: model_type {model_type!r} is not supported (supported decoders: {supported}; "
                            "encoders: bert)")
    return FAMILIES[model_type]


def _refuse_unimplemented(fam: DecoderFamily, raw: Mapping[str, Any], where: str) -> None:
    for key, changes_outputs in fam.refused.items():
        if key in raw and changes_outputs(raw[key]):
            raise BaseLoadError(f"{where}: {key} = {str(raw[key])[:60]} is not implemented by the studio and would "
                                "change the outputs, so the model is refused rather than run differently")


def _sizes(fam: DecoderFamily, raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, key in fam.keys.items():
        value = raw.get(key)
        if value is None:
            if name in fam.required:
                raise BaseLoadError(f"{where}: missing {key}")
            value = fam.defaults.get(name)
        values[name] = value
    for name in ("vocab_size", "hidden_size", "num_layers", "num_heads"):
        values[name] = _size(values[name], name, fam.keys[name], where)
    for name in ("num_kv_heads", "intermediate_size", "head_dim"):
        if values.get(name) is not None:
            values[name] = _size(values[name], name, fam.keys[name], where)
    values["num_kv_heads"] = values.get("num_kv_heads") or values["num_heads"]
    values["intermediate_size"] = values.get("intermediate_size") or 4 * values["hidden_size"]
    values["head_dim"] = values.get("head_dim") or 0
    values["max_positions"] = _size(values["max_positions"], "max_positions", fam.keys["max_positions"], where)
    values["norm_eps"] = _epsilon(values["norm_eps"], fam.keys["norm_eps"], where)
    values["tie_word_embeddings"] = _bool(values["tie_word_embeddings"], fam.keys["tie_word_embeddings"], where)
    for name in ("scale_attention", "scale_by_layer"):
        if name in values:
            values[name] = _bool(values[name], fam.keys[name], where)
    act = values["hidden_act"]
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise BaseLoadError(f"{where}: {fam.keys['hidden_act']} {act!r} is not supported "
                            f"(supported: {', '.join(ACTIVATIONS)})")
    if values.get("pad_token_id") is not None:
        values["pad_token_id"] = _int(values["pad_token_id"], "pad_token_id", where, low=0)
    return values


def _window(fam: DecoderFamily, raw: Mapping[str, Any], where: str, layers: int) -> dict[str, Any]:
    if fam.sliding == EVERY_LAYER:
        window = raw.get("sliding_window", fam.defaults.get("sliding_window"))
        if window is None:
            return {}
        return {"sliding_window": _int(window, "sliding_window", where), "sliding_layers": tuple(range(layers))}
    if fam.sliding != LAYER_TYPES:
        return {}
    use = _bool(raw.get("use_sliding_window", fam.defaults["use_sliding_window"]), "use_sliding_window", where)
    window = raw.get("sliding_window", fam.defaults.get("sliding_window")) if use else None
    if window is not None:
        window = _int(window, "sliding_window", where)
    kinds = raw.get("layer_types")
    if kinds is None:
        first = _int(raw.get("max_window_layers", fam.defaults["max_window_layers"]), "max_window_layers", where,
                     low=0)
        kinds = ["sliding_attention" if window is not None and i >= first else "full_attention"
                 for i in range(layers)]
    if not isinstance(kinds, list) or len(kinds) != layers or any(kind not in LAYER_KINDS for kind in kinds):
        raise BaseLoadError(f"{where}: layer_types must list {layers} entries, each one of {', '.join(LAYER_KINDS)} "
                            f"(got {str(kinds)[:80]})")
    sliding = tuple(i for i, kind in enumerate(kinds) if kind == "sliding_attention")
    if sliding and window is None:
        raise BaseLoadError(f"{where}: layer_types has sliding_attention layers but sliding_window is off "
                            "(use_sliding_window false or sliding_window null)")
    return {"sliding_window": window, "sliding_layers": sliding} if sliding else {}


def read_decoder_config(raw: Mapping[str, Any], where: str) -> DecoderConfig:
    """A DecoderConfig from a Llama / Mistral / Qwen2 / GPT-2 config.json, as transformers 5 reads it."""
    fam = model_family(raw, where)
    _refuse_unimplemented(fam, raw, where)
    values = _sizes(fam, raw, where)
    for part, setting in fam.biases.items():
        values[f"{part}_bias"] = setting if isinstance(setting, bool) else _bool(raw.get(setting, False), setting,
                                                                                 where)
    for part, (key, default) in fam.dropouts.items():
        value = raw.get(key)
        values[f"{part}_dropout"] = _probability(default if value is None else value, key, where)
    values.update(_window(fam, raw, where, values["num_layers"]))
    _check_total(values, fam, where)
    if fam.positions == ROTARY:
        dim = values["head_dim"] or values["hidden_size"] // values["num_heads"]
        config_limits.rope_parameters(raw, where, dim, values["max_positions"])  # malformed or negative fields
        values["rope"] = rope_spec(raw, where, values["max_positions"])
    try:
        return DecoderConfig(fam.model_type, **values)
    except ValueError as exc:  # sizes that do not fit together; the message names the fields
        text = str(exc)
        renames = {"hidden_size": fam.keys["hidden_size"], "num_attention_heads": fam.keys["num_heads"],
                   "num_key_value_heads": fam.keys.get("num_kv_heads", fam.keys["num_heads"])}
        for studio_name, key in renames.items():
            text = text.replace(studio_name, key)
        raise BaseLoadError(f"{where}: {text}") from None
