"""The encoder family: a small, readable BERT-style encoder shared by `tiny` and pretrained checkpoints.

This file is the family's whole description: modules, sites, blocks (with residual adds and
LayerNorm placement, post-LN as BERT or pre-LN), Hugging Face names (hf_names.py, one table),
method defaults and pooling. Every place a PEFT method can attach is a Linear or a slot module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from . import hf_names
from .frozen import FrozenBase, Tokenizer
from .sites import (
    ACTIVATION,
    ADAPTER,
    EMBEDDING,
    KV_PREFIX,
    LINEAR,
    LINEAR_INPUT,
    NORM,
    PROMPT,
    TOKEN_ROWS,
    Block,
    Site,
)
from .slots import ActivationSlot, AdapterSlot, KVPrefixSlot, PromptSlot


@dataclass
class EncoderConfig:
    vocab_size: int
    d_model: int = 32
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 64
    max_positions: int = 128
    type_vocab_size: int = 0  # 0: no token-type embeddings (tiny); 2 for BERT checkpoints
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pooling: str = "mean"  # "mean" (masked mean), "cls" (the first vector) or "pooler" (BERT's dense + tanh on it)
    norm_placement: str = "post"  # "post": x = LN(x + f(x)) as BERT; "pre": x = x + f(LN(x)), final LN
    pooler: bool = False  # BERT's pooler (dense + tanh on the first vector), where a checkpoint has one

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


ACTIVATIONS = {
    "gelu": lambda: nn.GELU(),
    "gelu_new": lambda: nn.GELU(approximate="tanh"),
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": lambda: nn.ReLU(),
    "silu": lambda: nn.SiLU(),
    "swish": lambda: nn.SiLU(),
}


class Embeddings(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.word = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=0)
        self.position = nn.Embedding(cfg.max_positions, cfg.d_model)
        self.token_type = nn.Embedding(cfg.type_vocab_size, cfg.d_model) if cfg.type_vocab_size else None
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.prompt = PromptSlot()

    def forward(self, token_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = self.prompt(self.word(token_ids), mask)  # soft prompts join here, before positions
        offset = getattr(self.prompt, "position_offset", 0)  # PEFT-style prefix tuning: tokens start at n
        positions = torch.arange(offset, offset + x.shape[1], device=x.device)
        x = x + self.position(positions)[None]
        if self.token_type is not None:  # single-segment input: token type 0 everywhere
            x = x + self.token_type(torch.zeros(1, dtype=torch.long, device=x.device))
        return self.norm(x), mask


class SelfAttention(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.q = nn.Linear(cfg.d_model, cfg.d_model)
        self.k = nn.Linear(cfg.d_model, cfg.d_model)
        self.v = nn.Linear(cfg.d_model, cfg.d_model)
        self.o = nn.Linear(cfg.d_model, cfg.d_model)
        self.kv_prefix = KVPrefixSlot()
        self.keep_probs = False  # a lens sets it to read the attention weights (core/lenses/attention.py)
        self.probs: torch.Tensor | None = None

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        return x.view(batch, length, self.n_heads, width // self.n_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = (self.split_heads(proj(x)) for proj in (self.q, self.k, self.v))
        k, v, key_mask = self.kv_prefix(k, v, mask)  # prefix tuning adds keys here: L -> L+n
        batch, heads, length, head_dim = q.shape
        keys = k.shape[2]

        def stacked(t: torch.Tensor) -> torch.Tensor:  # [B, heads, n, d] -> [B * heads, n, d]
            return t.reshape(batch * heads, t.shape[2], head_dim)

        # softmax(q k^T / sqrt(d) + mask) computed transposed, keys along dim 1: torch's CPU softmax over a last
        # dimension of a dozen keys is ~4x slower than over dim 1; the scale and the padding mask (finfo.min on
        # padded keys, as masked_fill: any score + finfo.min rounds to finfo.min) go into the one baddbmm
        padded = torch.zeros(key_mask.shape, dtype=q.dtype, device=q.device)
        padded = padded.masked_fill(~key_mask, torch.finfo(q.dtype).min)
        padded = padded[:, None, :, None].expand(batch, heads, keys, 1).reshape(batch * heads, keys, 1)
        scores_t = torch.baddbmm(padded, stacked(k), stacked(q).transpose(1, 2), alpha=1 / math.sqrt(head_dim))
        probs_t = F.softmax(scores_t, dim=1)  # [B * heads, keys, L]
        if self.keep_probs:
            self.probs = probs_t.detach().view(batch, heads, keys, length).transpose(-1, -2)  # [B, heads, L, keys]
        context = torch.bmm(probs_t.transpose(1, 2), stacked(v)).view(batch, heads, length, head_dim)
        return self.o(context.transpose(1, 2).reshape(batch, length, heads * head_dim))


class FeedForward(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.d_ff)
        self.act = ACTIVATIONS[cfg.hidden_act]()
        self.act_scale = ActivationSlot()  # IA3 scales the intermediate activation here
        self.down = nn.Linear(cfg.d_ff, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act_scale(self.act(self.up(x))))


class Pooler(nn.Module):
    """BERT's pooler: tanh(dense(first vector)), what BertForSequenceClassification classifies."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, first: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(first))


class EncoderLayer(nn.Module):
    """Post-LN: x = LN(x + adapter(attn(x))); x = LN(x + adapter(ffn(x))).
    Pre-LN:  x = x + adapter(attn(LN(x)));  x = x + adapter(ffn(LN(x)))."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.pre_norm = cfg.norm_placement == "pre"
        self.attn = SelfAttention(cfg)
        self.attn_adapter = AdapterSlot()
        self.attn_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.ffn = FeedForward(cfg)
        self.ffn_adapter = AdapterSlot()
        self.ffn_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.attn_adapter(self.attn(self.attn_norm(x), mask))
            return x + self.ffn_adapter(self.ffn(self.ffn_norm(x)))
        x = self.attn_norm(x + self.attn_adapter(self.attn(x, mask), x, self.attn_norm))
        return self.ffn_norm(x + self.ffn_adapter(self.ffn(x), x, self.ffn_norm))


LINEAR_LABELS = {
    "q": "query projection",
    "k": "key projection",
    "v": "value projection",
    "o": "attention output projection",
    "up": "feed-forward up projection",
    "down": "feed-forward down projection",
}


class Encoder(FrozenBase):
    input_embedding_path = "embeddings.word"
    """Token + position embeddings, N transformer layers (post-LN or pre-LN), pooling."""

    name = "encoder"
    title = "BERT-style encoder"
    method_option_defaults = {"lora": {"targets": "q,v"}, "qlora": {"targets": "q,v"},
                              "ia3": {"targets": "k,v,ffn-act", "feedforward": "output.dense"},
                              "adapter": {"placement": "after-ffn"}}

    truncation_keeps_last_token = False  # True where texts end with [SEP] (checkpoints)

    def __init__(self, cfg: EncoderConfig, tokenizer: Tokenizer) -> None:
        super().__init__(tokenizer)
        if cfg.norm_placement not in ("post", "pre"):
            raise ValueError(f"norm placement must be post or pre (got {cfg.norm_placement!r})")
        self.cfg = cfg
        self.norm_placement = cfg.norm_placement
        self.hidden_size = cfg.d_model
        self.position_limit = cfg.max_positions
        self.num_layers = cfg.n_layers
        self.embeddings = Embeddings(cfg)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_layers))
        if cfg.norm_placement == "pre":  # pre-LN stacks end with one more LayerNorm
            self.final_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        if cfg.pooling == "pooler" and not cfg.pooler:
            raise ValueError("pooling 'pooler' needs BERT's pooler (dense + tanh), which this model does not have")
        if cfg.pooler:
            self.pooler = Pooler(cfg)
        self.freeze()

    def hf_module(self, module_path: str) -> str | None:
        return hf_names.hf_module(module_path)

    def target_presets(self) -> Mapping[str, tuple[str, ...]]:
        """PEFT's all-linear (every Linear but a classifier: BERT's pooler too) and the attention / MLP groups."""
        attention, mlp = ("q", "k", "v", "o"), ("up", "down")
        everything = attention + mlp + (("pooler",) if self.cfg.pooler else ())
        return {"attention": attention, "mlp": mlp, "all-linear": everything, "all linear": everything}

    def fit_positions(self, token_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cut texts to the positions a soft prompt (or a position-shifting prefix) of n vectors leaves
        (max_positions - n), as the tokenizer would at that length: a checkpoint's texts keep their [SEP]."""
        limit = self.cfg.max_positions - getattr(self.embeddings.prompt, "reserved_positions", 0)
        if token_ids.shape[1] <= limit:
            return token_ids, mask
        lengths = mask.sum(dim=1)
        ids, kept = token_ids[:, :limit].clone(), mask[:, :limit].clone()
        cut = lengths > limit
        if self.truncation_keeps_last_token and cut.any():
            ids[cut, limit - 1] = token_ids[cut, lengths[cut] - 1]
        return ids, kept

    def encode(self, token_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token hidden states [B, L', D] and the (possibly prompt-extended) mask."""
        token_ids, mask = self.fit_positions(token_ids, mask)
        x, mask = self.embeddings(token_ids, mask)
        for layer in self.layers:
            x = layer(x, mask)
        if self.cfg.norm_placement == "pre":
            x = self.final_norm(x)
        return x, mask

    def forward(self, token_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden, mask = self.encode(token_ids, mask)
        pool_positions = getattr(self.embeddings.prompt, "pool_positions", None)
        if pool_positions is not None:  # a soft prompt may leave its own vectors out of the pooling
            hidden, mask = pool_positions(hidden, mask)
        if self.cfg.pooling == "pooler":
            return self.pooler(hidden[:, 0])
        if self.cfg.pooling == "cls":
            return hidden[:, 0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)

    def sites(self) -> list[Site]:
        d, f = self.cfg.d_model, self.cfg.d_ff
        widths = {"q": (d, d), "k": (d, d), "v": (d, d), "o": (d, d), "up": (d, f), "down": (f, d)}

        def linear(at: str, i: int, path: str, short: str) -> list[Site]:
            fan_in, fan_out = widths[short]
            label = f"layer {i} {LINEAR_LABELS[short]}"
            return [Site(f"{at}.{path}", LINEAR, short, f"{at}.{path}", i, fan_in, fan_out, label),
                    Site(f"{at}.{path}.input", LINEAR_INPUT, f"{short}-in", f"{at}.{path}", i, fan_in, fan_in,
                         f"input of the {label}")]

        def norm(path: str, short: str, i: int | None, label: str) -> Site:
            return Site(path, NORM, short, path, i, d, d, label)

        sites = [Site("prompt", PROMPT, "input", "embeddings.prompt", None, d, d, "soft prompt before the embeddings")]
        tables = [("word", self.cfg.vocab_size, "token embeddings"), ("position", self.cfg.max_positions,
                                                                      "position embeddings")]
        if self.cfg.type_vocab_size:
            tables.append(("token_type", self.cfg.type_vocab_size, "token type embeddings"))
        sites.extend(Site(f"embeddings.{name}", EMBEDDING, name.replace("_", "-"), f"embeddings.{name}", None, rows, d,
                          label) for name, rows, label in tables)  # in: rows of the table, out: its width (as PEFT)
        sites.append(Site("embeddings.word.rows", TOKEN_ROWS, "tokens", "embeddings.word", None, self.cfg.vocab_size,
                          d, "chosen rows of the token embeddings"))
        sites.append(norm("embeddings.norm", "emb-norm", None, "embedding LayerNorm"))
        for i in range(self.cfg.n_layers):
            at = f"layers.{i}"
            sites.append(Site(f"{at}.attn.kv_prefix", KV_PREFIX, "kv", f"{at}.attn.kv_prefix", i, d, d,
                              f"layer {i} attention keys/values"))
            for short in ("q", "k", "v", "o"):
                sites.extend(linear(at, i, f"attn.{short}", short))
            sites.append(Site(f"{at}.attn_adapter", ADAPTER, "after-attn", f"{at}.attn_adapter", i, d, d,
                              f"layer {i} after attention"))
            sites.append(norm(f"{at}.attn_norm", "attn-norm", i, f"layer {i} attention LayerNorm"))
            sites.extend(linear(at, i, "ffn.up", "up"))
            sites.append(Site(f"{at}.ffn.act_scale", ACTIVATION, "ffn-act", f"{at}.ffn.act_scale", i, f, f,
                              f"layer {i} feed-forward activation"))
            sites.extend(linear(at, i, "ffn.down", "down"))
            sites.append(Site(f"{at}.ffn_adapter", ADAPTER, "after-ffn", f"{at}.ffn_adapter", i, d, d,
                              f"layer {i} after the feed-forward"))
            sites.append(norm(f"{at}.ffn_norm", "ffn-norm", i, f"layer {i} feed-forward LayerNorm"))
        if self.cfg.norm_placement == "pre":
            sites.append(norm("final_norm", "final-norm", None, "final LayerNorm"))
        if self.cfg.pooler:  # a Linear as any other: PEFT's `dense` and all-linear reach it too
            label = "pooler dense (tanh follows)"
            sites += [Site("pooler.dense", LINEAR, "pooler", "pooler.dense", None, d, d, label),
                      Site("pooler.dense.input", LINEAR_INPUT, "pooler-in", "pooler.dense", None, d, d,
                           f"input of the {label}")]
        return sites

    def blocks(self) -> list[Block]:
        cfg = self.cfg
        d, f = cfg.d_model, cfg.d_ff
        embed_children = [Block("embeddings.word", f"token {cfg.vocab_size}x{d}", "embedding", "embeddings.word"),
                          Block("embeddings.position", f"position {cfg.max_positions}x{d}", "embedding",
                                "embeddings.position")]
        if self.embeddings.token_type is not None:
            embed_children.append(Block("embeddings.token_type", f"token type {cfg.type_vocab_size}x{d}",
                                        "embedding", "embeddings.token_type"))
        embed_children.append(Block("embeddings.norm", f"LayerNorm {d}", "norm", "embeddings.norm"))
        blocks = [
            Block("input", "input tokens", "input", note="token ids and padding mask"),
            Block("embeddings", "embeddings", "embedding", "embeddings", children=tuple(embed_children)),
        ]
        for i in range(cfg.n_layers):
            at = f"layers.{i}"
            attn = Block(f"{at}.attn", f"self-attention ({cfg.n_heads} heads)", "attention", f"{at}.attn", i,
                         tuple(Block(f"{at}.attn.{s}", f"{s} {d}->{d}", "linear", f"{at}.attn.{s}", i)
                               for s in ("q", "k", "v", "o")),
                         note="softmax(q k^T / sqrt(d_head)) v")
            ffn = Block(f"{at}.ffn", "feed-forward", "ffn", f"{at}.ffn", i, (
                Block(f"{at}.ffn.up", f"up {d}->{f}", "linear", f"{at}.ffn.up", i),
                Block(f"{at}.ffn.act", cfg.hidden_act.upper(), "activation", f"{at}.ffn.act", i),
                Block(f"{at}.ffn.down", f"down {f}->{d}", "linear", f"{at}.ffn.down", i),
            ))
            blocks.append(Block(at, f"layer {i}", "layer", at, i, self._layer_children(at, i, attn, ffn)))
        if cfg.norm_placement == "pre":
            blocks.append(Block("final_norm", f"LayerNorm {d}", "norm", "final_norm", note="final pre-LN norm"))
        pool_note = {"cls": "the first token's vector", "mean": "average of the non-pad token vectors",
                     "pooler": "BERT's pooler: tanh(dense(first token's vector)), as BertForSequenceClassification"}
        if cfg.pooler:
            used = "classifies from it" if cfg.pooling == "pooler" else f"unused with {cfg.pooling} pooling"
            blocks.append(Block("pooler", f"pooler dense {d}->{d} + tanh", "pooler", "pooler", children=(
                Block("pooler.dense", f"dense {d}->{d}", "linear", "pooler.dense"),),
                note=f"BERT's pooler on the first token's vector (the studio {used})"))
        blocks.append(Block("pool", f"{cfg.pooling} pool", "pool", note=pool_note[cfg.pooling]))
        return blocks

    def _layer_children(self, at: str, i: int, attn: Block, ffn: Block) -> tuple[Block, ...]:
        """Post-LN: sublayer, then add + norm. Pre-LN: norm, sublayer, then add."""
        d = self.cfg.d_model
        if self.cfg.norm_placement == "post":
            return (attn,
                    Block(f"{at}.attn_norm", f"add + LayerNorm {d}", "norm", f"{at}.attn_norm", i,
                          note="residual: x + attention(x), then LayerNorm", residual=True),
                    ffn,
                    Block(f"{at}.ffn_norm", f"add + LayerNorm {d}", "norm", f"{at}.ffn_norm", i,
                          note="residual: x + ffn(x), then LayerNorm", residual=True))
        return (Block(f"{at}.attn_norm", f"LayerNorm {d}", "norm", f"{at}.attn_norm", i, note="pre-LN"),
                attn,
                Block(f"{at}.attn_add", "add", "add", None, i, note="residual: x + attention(LN(x))", residual=True),
                Block(f"{at}.ffn_norm", f"LayerNorm {d}", "norm", f"{at}.ffn_norm", i, note="pre-LN"),
                ffn,
                Block(f"{at}.ffn_add", "add", "add", None, i, note="residual: x + ffn(LN(x))", residual=True))
