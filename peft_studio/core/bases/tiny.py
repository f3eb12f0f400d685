"""`tiny`: a randomly initialised, frozen BERT-style encoder, small enough for live demos."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .encoder import Encoder, EncoderConfig
from .frozen import Tokenizer, TrainDefaults


class TinyBase(Encoder):
    name = "tiny"
    title = "Tiny transformer encoder"
    train_defaults = TrainDefaults(steps=300, lr=1e-2)
    option_ranges = {"d_model": (1, 4096), "n_heads": (1, 256), "n_layers": (1, 48), "d_ff": (1, 16384),
                     "max_positions": (1, 8192)}
    option_choices = {"norm_placement": ("post", "pre")}
    nullable_options = frozenset({"d_ff"})

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> str | None:
        width, heads = options.get("d_model", 32), options.get("n_heads", 4)
        if width % heads:
            return f"n_heads {heads} must divide d_model {width} (each head gets d_model / n_heads channels)"
        return None

    @classmethod
    def max_positions(cls, options: Mapping[str, Any]) -> int | None:
        return options.get("max_positions", 128)

    def __init__(self, tokenizer: Tokenizer, d_model: int = 32, n_heads: int = 4, n_layers: int = 2,
                 d_ff: int | None = None, max_positions: int = 128, norm_placement: str = "post") -> None:
        cfg = EncoderConfig(vocab_size=tokenizer.vocab_size, d_model=d_model, n_heads=n_heads, n_layers=n_layers,
                            d_ff=d_ff or 2 * d_model, max_positions=max_positions, layer_norm_eps=1e-5,
                            norm_placement=norm_placement)
        super().__init__(cfg, tokenizer)
