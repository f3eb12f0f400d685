"""The seed's FrozenBaseEncoder: Embedding -> masked mean pool -> Linear -> tanh."""

from __future__ import annotations

import torch
from torch import nn

from .frozen import FrozenBase, Tokenizer, TrainDefaults
from .sites import ACTIVATION, ADAPTER, KV_PREFIX, LINEAR, PROMPT, TOKEN_ROWS, Block, Site
from .slots import ActivationSlot, AdapterSlot, PromptSlot

NO_ATTENTION = "no attention layers: this base pools embeddings without self-attention"


class SeedPooledBase(FrozenBase):
    input_embedding_path = "embedding"
    """Exactly the seed's encoder; constructing it draws the same random numbers as the seed."""

    name = "seed-pooled"
    title = "Seed pooled encoder"
    default_method = "adapter"
    default_dataset = "seed-intents"
    train_defaults = TrainDefaults(steps=201, lr=0.05)  # the seed's run
    method_option_defaults = {"lora": {"targets": "proj"}, "qlora": {"targets": "proj"},
                              "ia3": {"targets": "hidden"}}
    option_ranges = {"hidden_dim": (1, 4096)}

    def __init__(self, tokenizer: Tokenizer, hidden_dim: int = 16) -> None:
        super().__init__(tokenizer)
        self.hidden_size = hidden_dim
        # Creation order matters: the seed builds embedding, then proj, from the same RNG.
        self.embedding = nn.Embedding(tokenizer.vocab_size, hidden_dim)
        self.proj = nn.Linear(hidden_dim, hidden_dim)
        self.prompt = PromptSlot()
        self.act_scale = ActivationSlot()
        self.adapter = AdapterSlot()
        self.freeze()

    def forward(self, token_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        emb = self.embedding(token_ids)
        emb, mask = self.prompt(emb, mask)
        weights = mask.unsqueeze(-1).to(emb.dtype)
        pooled = (emb * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
        hidden = self.act_scale(torch.tanh(self.proj(pooled)))
        return self.adapter(hidden)

    def sites(self) -> list[Site]:
        d = self.hidden_size
        return [
            Site("prompt", PROMPT, "input", "prompt", None, d, d, "soft prompt before the token embeddings"),
            Site("embedding.rows", TOKEN_ROWS, "tokens", "embedding", None, self.embedding.num_embeddings, d,
                 "chosen rows of the token embeddings"),
            Site(
                "prefix", KV_PREFIX, "kv", "", None, d, d, "attention keys/values",
                unavailable={"prefix-tuning": NO_ATTENTION},
            ),
            Site("proj", LINEAR, "proj", "proj", None, d, d, "pooled projection Linear"),
            Site("hidden", ACTIVATION, "hidden", "act_scale", None, d, d, "tanh hidden activation"),
            Site("adapter", ADAPTER, "after-pool", "adapter", None, d, d, "after the pooled output (after tanh)"),
        ]

    def blocks(self) -> list[Block]:
        d = self.hidden_size
        return [
            Block("input", "input tokens", "input", note="token ids, padded with 0"),
            Block("embedding", f"Embedding {self.embedding.num_embeddings}x{d}", "embedding", "embedding"),
            Block("pool", "masked mean pool", "pool", note="average of the non-pad token vectors"),
            Block("proj", f"Linear {d}->{d}", "linear", "proj"),
            Block("tanh", "tanh", "activation", note="hidden = tanh(proj(pooled))"),
        ]
