"""The decoder: one causal language model implementation that builds any row of the family table.

Every family here is pre-norm: token embeddings (plus learned positions where the row has them), then per
layer  x = x + adapter(attention(norm(x)))  and  x = x + adapter(mlp(norm(x))),  a final norm and an LM head
(tied to the embeddings or not). The row (decoder_families.py) decides the rest: RMSNorm or LayerNorm,
rotary positions (with their scaling, rope.py) or a position embedding, q/k/v/o Linears or one fused Conv1D,
grouped-query attention, sliding windows, biases, a gated (SwiGLU) or plain MLP, dropouts, module names.

Module names are transformers' own (`model.layers.3.self_attn.q_proj`, `transformer.h.3.attn.c_attn`,
`lm_head`), so a PEFT target name selects the same modules here as in PEFT, a checkpoint's state dict loads
unchanged, and `hf_module` is the identity on real modules (None on the studio's slots, which have no weights
and no Hugging Face counterpart). Attention is PyTorch's scaled_dot_product_attention, as transformers' default.

Classification (the studio's task): the pooled vector is the final-normed hidden state of the last real
token, as transformers' *ForSequenceClassification does: under causal attention it is the only position that
has read the whole text. Generation runs the same modules with a KV cache (`KVCache`, core/model/generate.py).

A base built on the meta device has shapes and no memory: it can be inspected (census, counts, diagram,
memory) but not run, so it is never trained or asked to predict (`on_meta_device`).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from .decoder_config import DecoderConfig
from .decoder_families import LAYER_NORM, LEARNED, ROTARY, DecoderFamily
from .encoder import ACTIVATIONS
from .frozen import FrozenBase, Tokenizer, TrainDefaults
from .rope import Rotary, apply_rotary
from .sites import (
    ACTIVATION,
    ADAPTER,
    GATED_PROMPT,
    KV_PREFIX,
    LINEAR,
    LINEAR_INPUT,
    NORM,
    PROMPT,
    TOKEN_ROWS,
    Block,
    Site,
    layer_refusals,
)
from .slots import ActivationSlot, AdapterSlot, GatedPromptSlot, KVPrefixSlot, PromptSlot

LLAMA, GPT2 = "llama", "gpt2"  # two rows of the family table (also the layouts every row follows)
SLOT_NAMES = ("prompt", "kv_prefix", "gated_prompt", "attn_adapter", "mlp_adapter", "act_scale")  # studio-only modules

__all__ = ["GPT2", "LLAMA", "Conv1D", "DecoderBase", "DecoderConfig", "HashTokenizer", "KVCache", "RMSNorm",
           "TinyDecoderBase", "causal_attention"]


class HashTokenizer:
    """Stands in for a model's real tokenizer, which is not shipped with an architecture file.

    Whitespace words hashed (CRC-32) into the model's vocabulary; 0 is padding. Only sequence lengths
    matter on the meta device (shape notes, memory), and those are word counts here."""

    pad_id = 0

    def __init__(self, vocab_size: int, max_len: int = 128) -> None:
        self.vocab_size = vocab_size
        self.max_len = max_len

    def encode(self, text: str) -> list[int]:
        return [1 + zlib.crc32(word.encode()) % (self.vocab_size - 1) for word in text.lower().split()][:self.max_len]

    def batch(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.encode(text) for text in texts]
        length = max([1, *(len(row) for row in rows)])
        ids = torch.zeros((len(rows), length), dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.bool)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, :len(row)] = True
        return ids, mask


# ---- building blocks ---------------------------------------------------------------------------
class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 (Zhang & Sennrich, 2019; transformers' LlamaRMSNorm)."""

    def __init__(self, width: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * x.to(dtype)


class Conv1D(nn.Module):
    """GPT-2's Linear with its weight stored transposed: y = x W + b, W of shape [in, out]."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight)  # as transformers' Conv1D
        return out.view(*x.shape[:-1], self.out_features)


def _norm(cfg: DecoderConfig) -> nn.Module:
    if cfg.fam.norm == LAYER_NORM:
        return nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_eps)
    return RMSNorm(cfg.hidden_size, cfg.norm_eps)


def _linear(cfg: DecoderConfig, fan_in: int, fan_out: int, bias: bool) -> nn.Module:
    if cfg.fam.conv1d:
        return Conv1D(fan_in, fan_out)  # GPT-2's Conv1D always has a bias
    return nn.Linear(fan_in, fan_out, bias=bias)


def _dropout(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()


@dataclass
class KVCache:
    """Each layer's keys and values so far (after rotary, prefix keys included) and their key mask, for
    generation: a step runs only the new tokens. `length` counts the sequence positions already seen."""

    layers: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int] | None] = field(default_factory=list)
    length: int = 0

    @classmethod
    def empty(cls, num_layers: int) -> KVCache:
        return cls([None] * num_layers, 0)

    def select(self, rows: torch.Tensor) -> None:
        """Keep only these batch rows (a generation that drops finished rows)."""
        self.layers = [None if entry is None else (entry[0][rows], entry[1][rows], entry[2][rows], entry[3])
                       for entry in self.layers]


ATTENTION = ("sdpa", "eager")  # transformers' default and its explicit softmax


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor, *,
                     prefix: int = 0, window: int | None = None, scale: float | None = None,
                     dropout: float = 0.0, implementation: str = "sdpa", keep: list | None = None) -> torch.Tensor:
    """softmax(q k^T * scale + mask) v, K/V heads shared by groups of query heads (grouped-query attention).

    Keys are [prefix keys (seen by every token) ; earlier tokens (a KV cache) ; the queries' own tokens]: token
    t sees the tokens 0..t, and with a sliding window only those after t - window (transformers' overlay).
    "sdpa" is PyTorch's fused kernel (transformers' default); "eager" writes the softmax out, as transformers'
    eager attention and the memory ledger's count of saved tensors (memory/at_scale.py) do. `keep` (a list) gets
    the softmax weights [B, heads, L, keys] (the eager path then runs, for a lens)."""
    length, keys = q.shape[2], k.shape[2]
    past = keys - prefix - length
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if implementation == "sdpa" and keep is None and window is None and length in (1, keys) and \
            bool(key_mask.all()):
        # nothing but causality to mask (no padding, prefix, cache or window): the fused causal kernel; or one new
        # token after a KV cache (or prefix keys), which sees every key: no mask at all (as transformers decodes)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scale, is_causal=length > 1,
                                              enable_gqa=q.shape[1] != k.shape[1])
    query_at = torch.arange(past, past + length, device=q.device)[:, None]
    key_at = torch.arange(keys, device=q.device)[None, :] - prefix  # prefix keys sit before position 0
    allowed = key_at <= query_at
    if window is not None:
        allowed = allowed & ((key_at > query_at - window) | (key_at < 0))
    allowed = allowed[None, None] & key_mask[:, None, None, :].bool()
    if implementation == "eager" or keep is not None:
        groups = q.shape[1] // k.shape[1]
        if groups > 1:  # grouped-query attention: K/V head j serves query heads j*g .. j*g+g-1
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        scores = (q @ k.transpose(-1, -2)) * scale
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        probs = F.softmax(scores, dim=-1)
        if keep is not None:
            keep.append(probs.detach())
        return F.dropout(probs, dropout, training=dropout > 0) @ v
    # a padding query may see no key at all; it sees itself (its output is never used, but stays finite)
    allowed = allowed | (key_at == query_at)[None, None]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout, scale=scale,
                                          enable_gqa=q.shape[1] != k.shape[1])


def _heads(x: torch.Tensor, dim: int) -> torch.Tensor:
    batch, length, width = x.shape
    return x.view(batch, length, width // dim, dim).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    batch, heads, length, dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * dim)


# ---- one layer ---------------------------------------------------------------------------------
class DecoderAttention(nn.Module):
    """Causal self-attention: q/k/v/o Linears (or GPT-2's fused c_attn + c_proj), rotary positions where the
    family has them, a KV-prefix slot (prefix tuning), a gated-prompt slot on its output (LLaMA-Adapter), a sliding
    window where the config sets one."""

    def __init__(self, cfg: DecoderConfig, layer: int) -> None:
        super().__init__()
        fam, d = cfg.fam, cfg.hidden_size
        self.fam, self.layer = fam, layer
        self.head_dim, self.q_width, self.kv_width = cfg.dim_per_head, cfg.q_width, cfg.kv_width
        if fam.fused_qkv:
            fused, out = fam.projections
            setattr(self, fused, _linear(cfg, d, cfg.q_width + 2 * cfg.kv_width, cfg.qkv_bias))
            setattr(self, out, _linear(cfg, cfg.q_width, d, cfg.o_bias))
        else:
            q, k, v, o = fam.projections
            setattr(self, q, _linear(cfg, d, cfg.q_width, cfg.qkv_bias))
            setattr(self, k, _linear(cfg, d, cfg.kv_width, cfg.qkv_bias))
            setattr(self, v, _linear(cfg, d, cfg.kv_width, cfg.qkv_bias))
            setattr(self, o, _linear(cfg, cfg.q_width, d, cfg.o_bias))
        self.kv_prefix = KVPrefixSlot()
        self.gated_prompt = GatedPromptSlot()  # LLaMA-Adapter's adaption prompt adds to the output here
        self.resid_dropout = _dropout(cfg.residual_dropout)
        self.window = cfg.window(layer)
        self.dropout = cfg.attention_dropout
        self.implementation = cfg.attn_implementation
        self.keep_probs = False  # a lens sets it to read the attention weights (core/lenses/attention.py)
        self.probs: torch.Tensor | None = None
        scale = cfg.dim_per_head ** -0.5 if cfg.scale_attention else 1.0
        self.scale = scale / (layer + 1) if cfg.scale_by_layer else scale

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        names = self.fam.projections
        if self.fam.fused_qkv:
            q, k, v = getattr(self, names[0])(x).split((self.q_width, self.kv_width, self.kv_width), dim=2)
        else:
            q, k, v = (getattr(self, name)(x) for name in names[:3])
        return _heads(q, self.head_dim), _heads(k, self.head_dim), _heads(v, self.head_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None,
                cache: KVCache | None = None) -> torch.Tensor:
        q, k, v = self.project(x)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        entry = cache.layers[self.layer] if cache is not None else None
        if entry is None:
            before = k.shape[2]
            k, v, key_mask = self.kv_prefix(k, v, mask)  # prefix tuning adds keys here: L -> n + L
            prefix = k.shape[2] - before
        else:
            past_k, past_v, past_mask, prefix = entry
            k, v, key_mask = torch.cat([past_k, k], 2), torch.cat([past_v, v], 2), torch.cat([past_mask, mask], 1)
        if cache is not None:
            cache.layers[self.layer] = (k, v, key_mask, prefix)
        kept: list | None = [] if self.keep_probs else None
        out = causal_attention(q, k, v, key_mask, prefix=prefix, window=self.window, scale=self.scale,
                               dropout=self.dropout if self.training else 0.0, implementation=self.implementation,
                               keep=kept)
        if kept:
            self.probs = kept[0]
        out = self.resid_dropout(getattr(self, self.fam.projections[-1])(_merge(out)))
        return self.gated_prompt(q, out, self)


class DecoderMLP(nn.Module):
    """down(act(gate x) * up x) (gated, SwiGLU) or down(act(up x)); IA3's feed-forward scale sits on down's input."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        fam, d, f = cfg.fam, cfg.hidden_size, cfg.intermediate_size
        self.fam = fam
        for name in fam.mlp_projections[:-1]:
            setattr(self, name, _linear(cfg, d, f, cfg.mlp_bias))
        setattr(self, fam.activation, ACTIVATIONS[cfg.hidden_act]())
        self.act_scale = ActivationSlot()  # IA3 scales the down projection's input here, as PEFT's feed-forward IA3
        setattr(self, fam.mlp_projections[-1], _linear(cfg, f, d, cfg.mlp_bias))
        self.dropout = _dropout(cfg.residual_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        names, act = self.fam.mlp_projections, getattr(self, self.fam.activation)
        if self.fam.gated_mlp:
            hidden = act(getattr(self, names[0])(x)) * getattr(self, names[1])(x)
        else:
            hidden = act(getattr(self, names[0])(x))
        return self.dropout(getattr(self, names[-1])(self.act_scale(hidden)))


class DecoderLayer(nn.Module):
    """x = x + adapter(attention(norm(x)));  x = x + adapter(mlp(norm(x)))."""

    def __init__(self, cfg: DecoderConfig, layer: int) -> None:
        super().__init__()
        fam = cfg.fam
        self.fam = fam
        setattr(self, fam.norms[0], _norm(cfg))
        setattr(self, fam.attention, DecoderAttention(cfg, layer))
        self.attn_adapter = AdapterSlot()
        setattr(self, fam.norms[1], _norm(cfg))
        self.mlp = DecoderMLP(cfg)
        self.mlp_adapter = AdapterSlot()

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None,
                cache: KVCache | None = None) -> torch.Tensor:
        fam = self.fam
        attention = getattr(self, fam.attention)
        x = x + self.attn_adapter(attention(getattr(self, fam.norms[0])(x), mask, rotary, cache))
        return x + self.mlp_adapter(self.mlp(getattr(self, fam.norms[1])(x)))


class DecoderStack(nn.Module):
    """transformers' `model` / `transformer`: embeddings, the layers, the final norm (no LM head)."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        fam = cfg.fam
        self.fam, self.max_positions = fam, cfg.max_positions
        setattr(self, fam.token_embedding, nn.Embedding(cfg.vocab_size, cfg.hidden_size, cfg.pad_token_id))
        if fam.positions == LEARNED:
            setattr(self, fam.position_embedding, nn.Embedding(cfg.max_positions, cfg.hidden_size))
        self.prompt = PromptSlot()
        self.drop = _dropout(cfg.embedding_dropout)
        setattr(self, fam.layer_list, nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_layers)))
        setattr(self, fam.final_norm, _norm(cfg))
        self.rotary_emb = Rotary(cfg.rope, cfg.dim_per_head, cfg.max_positions) if fam.positions == ROTARY else None
        self.gradient_checkpointing = False

    @property
    def layers_list(self) -> nn.ModuleList:
        return getattr(self, self.fam.layer_list)

    def forward(self, token_ids: torch.Tensor, mask: torch.Tensor,
                cache: KVCache | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        fam = self.fam
        x = getattr(self, fam.token_embedding)(token_ids)
        past = cache.length if cache is not None else 0
        if not past:  # soft prompts come first: positions 0..n-1 (a cached generation has them already)
            x, mask = self.prompt(x, mask)
        start = past + getattr(self.prompt, "position_offset", 0)
        positions = torch.arange(start, start + x.shape[1], device=x.device)
        rotary = None
        if fam.positions == LEARNED:
            if start + x.shape[1] > self.max_positions:
                raise ValueError(f"sequence of {start + x.shape[1]} tokens is longer than the "
                                 f"{self.max_positions} positions of this model")
            x = x + getattr(self, fam.position_embedding)(positions)[None]
        else:
            rotary = self.rotary_emb(positions, x.dtype)
        x = self.drop(x)
        for layer in self.layers_list:
            if self.gradient_checkpointing and self.training and cache is None:
                x = checkpoint(layer, x, mask, rotary, None, use_reentrant=False)  # recomputed in backward
            else:
                x = layer(x, mask, rotary, cache)
        if cache is not None:
            cache.length = past + x.shape[1]
        return getattr(self, fam.final_norm)(x), mask


# ---- the base ----------------------------------------------------------------------------------
LABELS = {
    "q_proj": "query projection", "k_proj": "key projection", "v_proj": "value projection",
    "o_proj": "attention output projection", "gate_proj": "MLP gate projection",
    "up_proj": "MLP up projection", "down_proj": "MLP down projection",
    "c_attn": "fused q/k/v projection (Conv1D)", "attn.c_proj": "attention output projection (Conv1D)",
    "c_fc": "MLP up projection (Conv1D)", "mlp.c_proj": "MLP down projection (Conv1D)",
}


class DecoderBase(FrozenBase):
    """A causal decoder of any family in the table; pools the last real token for classification."""

    name = "decoder"
    title = "Causal decoder"
    norm_placement = "pre"
    train_defaults = TrainDefaults(steps=300, lr=1e-2)
    default_dataset = "intents"
    head_bias = False  # transformers' *ForSequenceClassification scores with a bias-free Linear (`score`)

    def __init__(self, cfg: DecoderConfig, tokenizer: Tokenizer, name: str = "decoder", title: str = "",
                 summary: str = "") -> None:
        super().__init__(tokenizer)
        self.cfg = cfg
        fam = cfg.fam
        self.name = name
        self.title = title or f"{fam.title}-style decoder"
        self.summary = summary
        self.hidden_size = cfg.hidden_size
        self.num_layers = cfg.num_layers
        self.position_limit = cfg.max_positions if fam.positions == LEARNED else None  # a soft prompt takes some
        setattr(self, fam.stack, DecoderStack(cfg))
        embeddings = self.stack.get_submodule(fam.token_embedding)
        self.input_embedding_path = fam.embedding_path
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:  # one tensor, two uses (as transformers ties them)
            self.lm_head.weight = embeddings.weight
        self.on_meta_device = embeddings.weight.is_meta
        self.freeze()

    @property
    def fam(self) -> DecoderFamily:
        return self.cfg.fam

    @property
    def stack(self) -> DecoderStack:
        return getattr(self, self.cfg.fam.stack)

    @property
    def gradient_checkpointing(self) -> bool:
        return self.stack.gradient_checkpointing

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, on: bool) -> None:
        """Keep only each layer's input for the backward pass and recompute the layer there (less memory, one
        more forward of the stack per step)."""
        self.stack.gradient_checkpointing = bool(on)

    # ---- running ---------------------------------------------------------------------------
    def encode(self, token_ids: torch.Tensor, mask: torch.Tensor,
               cache: KVCache | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token hidden states after the final norm [B, L', D] and the (possibly prompt-extended) mask.
        With learned positions, texts are cut to the positions a soft prompt leaves (as the tokenizer would)."""
        if self.position_limit is not None and cache is None:
            limit = self.position_limit - getattr(self.stack.prompt, "reserved_positions", 0)
            token_ids, mask = token_ids[:, :max(limit, 1)], mask[:, :max(limit, 1)]
        return self.stack(token_ids, mask, cache)

    def forward(self, token_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden, mask = self.encode(token_ids, mask)
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = (mask.long() * positions).argmax(dim=1)  # the last real token, whatever the padding side
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    # ---- description -----------------------------------------------------------------------
    def method_defaults(self) -> Mapping[str, Mapping[str, Any]]:
        return self.fam.method_defaults

    def hf_module(self, module_path: str) -> str | None:
        """transformers' name: the module's own path, except for the studio's weightless slots."""
        return None if module_path.rsplit(".", 1)[-1] in SLOT_NAMES else module_path

    def target_presets(self) -> Mapping[str, tuple[str, ...]]:
        """PEFT-style names for groups of Linear targets: attention, mlp, all-linear (never the LM head)."""
        attention, mlp = self.fam.attention_projections, self.fam.mlp_names
        return {"attention": attention, "mlp": mlp, "all-linear": attention + mlp, "all linear": attention + mlp}

    def describe(self) -> str:
        return f"{self.title} (meta device: shapes only)" if self.on_meta_device else self.title

    def _layer_path(self, i: int) -> str:
        return self.fam.layer_path(i)

    def _linears(self) -> list[tuple[str, str, int, int]]:
        """(short name, path inside the layer, in, out) in data-flow order."""
        cfg, fam = self.cfg, self.fam
        d, f = cfg.hidden_size, cfg.intermediate_size
        if fam.fused_qkv:
            attention = [cfg.q_width + 2 * cfg.kv_width, d]
            fan_in = [d, cfg.q_width]
        else:
            attention = [cfg.q_width, cfg.kv_width, cfg.kv_width, d]
            fan_in = [d, d, d, cfg.q_width]
        mlp_out = [f] * (len(fam.mlp_projections) - 1) + [d]
        mlp_in = [d] * (len(fam.mlp_projections) - 1) + [f]
        return [(short, inner, i, o) for (short, inner), i, o in
                zip(fam.linears(), fan_in + mlp_in, attention + mlp_out, strict=True)]

    def sites(self) -> list[Site]:
        cfg, fam = self.cfg, self.fam
        d, f = cfg.hidden_size, cfg.intermediate_size
        conv1d = layer_refusals("Conv1D") if fam.conv1d else {}  # methods PEFT does not put on GPT-2's Conv1D
        tied = " (the tied LM head reads the same rows)" if cfg.tie_word_embeddings else ""
        sites = [Site("prompt", PROMPT, "input", f"{fam.stack}.prompt", None, d, d,
                      "soft prompt before the token embeddings (positions 0..n-1)"),
                 Site(f"{fam.embedding_path}.rows", TOKEN_ROWS, "tokens", fam.embedding_path, None, cfg.vocab_size, d,
                      "chosen rows of the token embeddings" + tied)]
        for i in range(cfg.num_layers):
            at = self._layer_path(i)
            sites.append(Site(f"{at}.{fam.attention}.kv_prefix", KV_PREFIX, "kv", f"{at}.{fam.attention}.kv_prefix", i,
                              cfg.kv_width, cfg.kv_width,
                              f"layer {i} attention keys/values ({cfg.num_kv_heads} K/V heads x {cfg.dim_per_head})"))
            sites.append(Site(f"{at}.{fam.attention}.gated_prompt", GATED_PROMPT, "gated-prompt",
                              f"{at}.{fam.attention}.gated_prompt", i, d, d,
                              f"layer {i} attention: a gated prompt with its own softmax, added to the output"))
            for short, inner, fan_in, fan_out in self._linears():
                if inner == fam.down_projection:
                    sites.append(Site(f"{at}.mlp.act_scale", ACTIVATION, "ffn-act", f"{at}.mlp.act_scale", i, f, f,
                                      f"layer {i} MLP activation (the down projection's input)"))
                label = LABELS.get(inner, LABELS.get(short, short))
                sites.append(Site(f"{at}.{inner}", LINEAR, short, f"{at}.{inner}", i, fan_in, fan_out,
                                  f"layer {i} {label}", dict(conv1d)))
                sites.append(Site(f"{at}.{inner}.input", LINEAR_INPUT, f"{short}-in", f"{at}.{inner}", i, fan_in,
                                  fan_in, f"input of the layer {i} {label}"))  # IA3 on a PEFT feed-forward module
                if inner == fam.output_projection:
                    sites.append(Site(f"{at}.attn_adapter", ADAPTER, "after-attn", f"{at}.attn_adapter", i, d, d,
                                      f"layer {i} after attention, before the residual add"))
            sites.append(Site(f"{at}.mlp_adapter", ADAPTER, "after-ffn", f"{at}.mlp_adapter", i, d, d,
                              f"layer {i} after the MLP, before the residual add"))
            for short, norm in zip(("attn-norm", "ffn-norm"), fam.norms, strict=True):  # LayerNorm tuning's sites
                sites.append(Site(f"{at}.{norm}", NORM, short, f"{at}.{norm}", i, d, d, f"layer {i} {norm}"))
        final = fam.final_norm_path
        sites.append(Site(final, NORM, "final-norm", final, None, d, d, "final norm"))
        return sites

    def _norm_name(self) -> str:
        return "LayerNorm" if self.fam.norm == LAYER_NORM else "RMSNorm"

    def blocks(self) -> list[Block]:
        cfg, fam = self.cfg, self.fam
        d, v = cfg.hidden_size, cfg.vocab_size
        learned = fam.positions == LEARNED
        tied = " = lm_head (tied: one tensor)" if cfg.tie_word_embeddings else ""
        embed_path = fam.embedding_path
        embeds = [Block(embed_path, f"{fam.token_embedding} {v}x{d}{tied}", "embedding", embed_path,
                        note="token embeddings" + ("; the LM head reuses this same tensor" if tied else ""))]
        if learned:
            path = f"{fam.stack}.{fam.position_embedding}"
            embeds.append(Block(path, f"{fam.position_embedding} {cfg.max_positions}x{d}", "embedding", path,
                                note="learned absolute positions"))
        rope = f"rotary positions are applied inside attention (no weights): {cfg.rope.describe()}"
        blocks = [Block("input", "input tokens", "input", note="token ids and padding mask"),
                  Block("embeddings", "embeddings" + (" + positions" if learned else ""), "embedding", None,
                        children=tuple(embeds), note="" if learned else rope)]
        for i in range(cfg.num_layers):
            at = self._layer_path(i)
            blocks.append(Block(at, f"layer {i}", "layer", at, i, self._layer_children(at, i)))
        final = fam.final_norm_path
        blocks.append(Block(final, f"{self._norm_name()} {d}", "norm", final, note="final norm of the pre-norm stack"))
        if not cfg.tie_word_embeddings:
            blocks.append(Block("lm_head", f"lm_head {d}->{v}", "output", "lm_head",
                                note="next-token logits; part of the model's memory, not used by the class head"))
        blocks.append(Block("pool", "last-token pool", "pool",
                            note="the last real token's vector: under causal attention it has read the whole text"))
        return blocks

    def _layer_children(self, at: str, i: int) -> tuple[Block, ...]:
        cfg, fam = self.cfg, self.fam
        d = cfg.hidden_size
        norm = self._norm_name()
        linear = {inner: Block(f"{at}.{inner}", self._linear_label(short, fan_in, fan_out), "linear",
                               f"{at}.{inner}", i)
                  for short, inner, fan_in, fan_out in self._linears()}
        attention_path = f"{at}.{fam.attention}"
        heads = (f"{cfg.num_heads} Q heads, {cfg.num_kv_heads} K/V heads (GQA)" if cfg.grouped
                 else f"{cfg.num_heads} heads")
        window = cfg.window(i)
        label = f"causal self-attention ({heads})" + (" + RoPE" if fam.positions == ROTARY else "") + \
            (f", window {window}" if window else "")
        notes = []
        if fam.fused_qkv:
            notes.append(f"{fam.projections[0]} computes q, k and v in one {'Conv1D' if fam.conv1d else 'Linear'}")
        if cfg.grouped:
            notes.append(f"each K/V head is shared by {cfg.num_heads // cfg.num_kv_heads} query heads")
        notes.append(f"token i attends to tokens {'i-' + str(window - 1) if window else '0'}..i (and any prefix keys)")
        attn = Block(attention_path, label, "attention", attention_path, i,
                     tuple(linear[f"{fam.attention}.{name}"] for name in fam.projections), note="; ".join(notes))
        act_path = f"{at}.mlp.{fam.activation}"
        act_label = f"{cfg.hidden_act.upper()}(gate) x up" if fam.gated_mlp else cfg.hidden_act.upper()
        names = [f"mlp.{name}" for name in fam.mlp_projections]
        mlp = Block(f"{at}.mlp", "SwiGLU MLP" if fam.gated_mlp else "MLP", "ffn", f"{at}.mlp", i, (
            *(linear[name] for name in names[:-1]), Block(act_path, act_label, "activation", act_path, i),
            linear[names[-1]]))
        first, second = fam.norms
        return (Block(f"{at}.{first}", f"{norm} {d}", "norm", f"{at}.{first}", i, note="pre-norm"),
                attn,
                Block(f"{at}.attn_add", "add", "add", None, i, note="residual: x + attention(norm(x))", residual=True),
                Block(f"{at}.{second}", f"{norm} {d}", "norm", f"{at}.{second}", i, note="pre-norm"),
                mlp,
                Block(f"{at}.mlp_add", "add", "add", None, i, note="residual: x + mlp(norm(x))", residual=True))

    def _linear_label(self, short: str, fan_in: int, fan_out: int) -> str:
        cfg = self.cfg
        if short == "q_proj":
            return f"q_proj {fan_in}->{fan_out} ({cfg.num_heads} heads)"
        if short in ("k_proj", "v_proj"):
            return f"{short} {fan_in}->{fan_out} ({cfg.num_kv_heads} K/V heads)"
        return f"{short} {fan_in}->{fan_out}"


class TinyDecoderBase(DecoderBase):
    """`tiny-decoder`: a random, frozen Llama-style decoder small enough to train live on a CPU.

    Two K/V heads for four query heads (grouped-query attention), tied embeddings, rotary positions. Its attention
    writes the softmax out ("eager"): the memory ledger is checked byte for byte against its saved tensors."""

    train_defaults = TrainDefaults(steps=300, lr=1e-2)
    option_ranges = {"n_layers": (1, 48)}  # a deeper stack for measurements (the memory tests draw 2-4 layers)

    def __init__(self, tokenizer: Tokenizer, d_model: int = 32, n_heads: int = 4, n_kv_heads: int = 2,
                 n_layers: int = 2, d_ff: int = 64) -> None:
        cfg = DecoderConfig(LLAMA, vocab_size=tokenizer.vocab_size, hidden_size=d_model, num_layers=n_layers,
                            num_heads=n_heads, num_kv_heads=n_kv_heads, intermediate_size=d_ff, max_positions=128,
                            norm_eps=1e-6, tie_word_embeddings=True, attn_implementation="eager")
        super().__init__(cfg, tokenizer, "tiny-decoder", "Tiny Llama-style decoder")
