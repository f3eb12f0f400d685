"""`tiny`: a randomly initialised, frozen BERT-style encoder, small enough for live demos."""

from __future__ import annotations

from .encoder import Encoder, EncoderConfig
from .frozen import Tokenizer, TrainDefaults


class TinyBase(Encoder):
    name = "tiny"
    title = "Tiny transformer encoder"
    train_defaults = TrainDefaults(steps=300, lr=1e-2)

    def __init__(self, tokenizer: Tokenizer, d_model: int = 32, n_heads: int = 4, n_layers: int = 2,
                 d_ff: int | None = None, max_positions: int = 128, norm_placement: str = "post") -> None:
        cfg = EncoderConfig(vocab_size=tokenizer.vocab_size, d_model=d_model, n_heads=n_heads, n_layers=n_layers,
                            d_ff=d_ff or 2 * d_model, max_positions=max_positions, layer_norm_eps=1e-5,
                            norm_placement=norm_placement)
        super().__init__(cfg, tokenizer)
