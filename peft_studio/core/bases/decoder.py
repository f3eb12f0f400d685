"""The decoder family: Llama-style and GPT-2-style causal language models, as one description.

Llama style (Llama, Mistral, Qwen2): token embeddings, then per layer RMSNorm -> self-attention with
rotary positions and grouped-query attention (fewer key/value heads than query heads, each K/V head
shared by a group of query heads) -> add, RMSNorm -> SwiGLU MLP down(silu(gate x) * up x) -> add;
a final RMSNorm and an LM head (tied to the embeddings or not).
GPT-2 style: token + learned position embeddings, per layer LayerNorm -> attention with one fused
c_attn (q, k, v in one Conv1D, weights stored [in, out]) -> add, LayerNorm -> MLP c_fc, GELU, c_proj
-> add; a final LayerNorm and a tied LM head.

Module names are transformers' own (`model.layers.3.self_attn.q_proj`, `transformer.h.3.attn.c_attn`,
`lm_head`), so a PEFT target name selects the same modules here as in PEFT, a state dict loads into
transformers' model unchanged, and `hf_module` is the identity on real modules (None on the studio's
slots, which have no weights and no Hugging Face counterpart).

Classification (the studio's task): the pooled vector is the final-normed hidden state of the last
real token, as transformers' *ForSequenceClassification does: under causal attention it is the only
position that has read the whole text. The LM head is part of the base (it counts in the census and
in memory) but the classifier does not use it.

A base built on the meta device has shapes and no memory: it can be inspected (census, counts,
diagram, memory) but not run, so it is never trained or asked to predict (`on_meta_device`).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .encoder import ACTIVATIONS
from .frozen import FrozenBase, Tokenizer, TrainDefaults
from .sites import ACTIVATION, ADAPTER, KV_PREFIX, LINEAR, NORM, PROMPT, Block, Site
from .slots import ActivationSlot, AdapterSlot, KVPrefixSlot, PromptSlot

LLAMA, GPT2 = "llama", "gpt2"
SLOT_NAMES = ("prompt", "kv_prefix", "attn_adapter", "mlp_adapter", "act_scale")  # studio-only modules

QLORA_CONV1D = ("GPT-2 stores these weights as Conv1D ([in, out]); the studio's 4-bit path quantizes nn.Linear "
                "weights only (LoRA here trains the same parameters; the census's nf4 column shows the 4-bit "
                "bytes)")


@dataclass(frozen=True)
class DecoderConfig:
    """The shapes of a decoder, from a config.json (see architectures.py) or given directly."""

    style: str  # LLAMA or GPT2
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
    rope_theta: float = 10000.0
    qkv_bias: bool = False  # Qwen2: True; Llama: attention_bias
    o_bias: bool = False  # Llama: attention_bias
    mlp_bias: bool = False  # Llama: mlp_bias
    head_dim: int = 0  # 0: hidden_size // num_heads
    model_type: str = "llama"

    def __post_init__(self) -> None:
        if self.style not in (LLAMA, GPT2):
            raise ValueError(f"style must be {LLAMA} or {GPT2} (got {self.style!r})")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act {self.hidden_act!r} is not supported ({', '.join(ACTIVATIONS)})")
        if not self.head_dim and self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                             f"{self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_attention_heads {self.num_heads} is not divisible by num_key_value_heads "
                             f"{self.num_kv_heads}")
        if self.style == GPT2 and self.num_kv_heads != self.num_heads:
            raise ValueError("GPT-2 attention has as many key/value heads as query heads")

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
        return x @ self.weight + self.bias


def rotate(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary position embedding (Su et al., 2021) in transformers' rotate-half layout; x: [B, H, L, d]."""
    half = x.shape[-1] // 2
    inv_freq = 1.0 / theta ** (torch.arange(0, 2 * half, 2, dtype=torch.float32, device=x.device) / (2 * half))
    angles = positions.float()[:, None] * inv_freq[None]
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v with K/V heads shared by groups of query heads.

    Keys may be longer than queries (a prefix): the first Lk - L keys are seen by every token, and
    token i sees the real keys 0..i only (causal)."""
    groups = q.shape[1] // k.shape[1]
    if groups > 1:  # grouped-query attention: K/V head j serves query heads j*g .. j*g+g-1
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    length, keys = q.shape[2], k.shape[2]
    causal = torch.ones(length, keys, dtype=torch.bool, device=q.device).tril(diagonal=keys - length)
    allowed = causal[None, None] & key_mask[:, None, None, :]
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    return F.softmax(scores, dim=-1) @ v


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, length, width = x.shape
    return x.view(batch, length, heads, width // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    batch, heads, length, dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * dim)


# ---- Llama style -------------------------------------------------------------------------------
class LlamaAttention(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_size
        self.q_proj = nn.Linear(d, cfg.q_width, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(d, cfg.kv_width, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(d, cfg.kv_width, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(cfg.q_width, d, bias=cfg.o_bias)
        self.kv_prefix = KVPrefixSlot()

    def forward(self, x: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        q = rotate(_heads(self.q_proj(x), cfg.num_heads), positions, cfg.rope_theta)
        k = rotate(_heads(self.k_proj(x), cfg.num_kv_heads), positions, cfg.rope_theta)
        v = _heads(self.v_proj(x), cfg.num_kv_heads)
        k, v, key_mask = self.kv_prefix(k, v, mask)  # prefix tuning adds keys here: L -> n + L
        return self.o_proj(_merge(causal_attention(q, k, v, key_mask)))


class LlamaMLP(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        d, f = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = nn.Linear(d, f, bias=cfg.mlp_bias)
        self.up_proj = nn.Linear(d, f, bias=cfg.mlp_bias)
        self.down_proj = nn.Linear(f, d, bias=cfg.mlp_bias)
        self.act_fn = ACTIVATIONS[cfg.hidden_act]()
        self.act_scale = ActivationSlot()  # IA3 scales down_proj's input here, as PEFT's feed-forward IA3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_scale(self.act_fn(self.gate_proj(x)) * self.up_proj(x)))


class LlamaLayer(nn.Module):
    """x = x + adapter(attn(RMSNorm(x))); x = x + adapter(mlp(RMSNorm(x)))."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.norm_eps)
        self.self_attn = LlamaAttention(cfg)
        self.attn_adapter = AdapterSlot()
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.norm_eps)
        self.mlp = LlamaMLP(cfg)
        self.mlp_adapter = AdapterSlot()

    def forward(self, x: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = x + self.attn_adapter(self.self_attn(self.input_layernorm(x), mask, positions))
        return x + self.mlp_adapter(self.mlp(self.post_attention_layernorm(x)))


class LlamaModel(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.prompt = PromptSlot()
        self.layers = nn.ModuleList(LlamaLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.norm_eps)

    def forward(self, token_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = self.prompt(self.embed_tokens(token_ids), mask)  # soft prompts come first: positions 0..n-1
        positions = torch.arange(x.shape[1], device=x.device)
        for layer in self.layers:
            x = layer(x, mask, positions)
        return self.norm(x), mask


# ---- GPT-2 style -------------------------------------------------------------------------------
class GPT2Attention(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.c_attn = Conv1D(cfg.hidden_size, 3 * cfg.hidden_size)
        self.c_proj = Conv1D(cfg.hidden_size, cfg.hidden_size)
        self.kv_prefix = KVPrefixSlot()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = (_heads(t, self.cfg.num_heads) for t in self.c_attn(x).split(self.cfg.hidden_size, dim=2))
        k, v, key_mask = self.kv_prefix(k, v, mask)
        return self.c_proj(_merge(causal_attention(q, k, v, key_mask)))


class GPT2MLP(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.c_fc = Conv1D(cfg.hidden_size, cfg.intermediate_size)
        self.act = ACTIVATIONS[cfg.hidden_act]()
        self.act_scale = ActivationSlot()
        self.c_proj = Conv1D(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act_scale(self.act(self.c_fc(x))))


class GPT2Block(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_eps)
        self.attn = GPT2Attention(cfg)
        self.attn_adapter = AdapterSlot()
        self.ln_2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_eps)
        self.mlp = GPT2MLP(cfg)
        self.mlp_adapter = AdapterSlot()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn_adapter(self.attn(self.ln_1(x), mask))
        return x + self.mlp_adapter(self.mlp(self.ln_2(x)))


class GPT2Model(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.wpe = nn.Embedding(cfg.max_positions, cfg.hidden_size)
        self.prompt = PromptSlot()
        self.h = nn.ModuleList(GPT2Block(cfg) for _ in range(cfg.num_layers))
        self.ln_f = nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_eps)
        self.max_positions = cfg.max_positions

    def forward(self, token_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = self.prompt(self.wte(token_ids), mask)  # soft prompts take the first positions
        if x.shape[1] > self.max_positions:
            raise ValueError(f"sequence of {x.shape[1]} tokens is longer than n_positions {self.max_positions}")
        x = x + self.wpe(torch.arange(x.shape[1], device=x.device))[None]
        for block in self.h:
            x = block(x, mask)
        return self.ln_f(x), mask


# ---- the base ----------------------------------------------------------------------------------
LABELS = {
    "q_proj": "query projection", "k_proj": "key projection", "v_proj": "value projection",
    "o_proj": "attention output projection", "gate_proj": "MLP gate projection",
    "up_proj": "MLP up projection", "down_proj": "MLP down projection",
    "c_attn": "fused q/k/v projection (Conv1D)", "attn.c_proj": "attention output projection (Conv1D)",
    "c_fc": "MLP up projection (Conv1D)", "mlp.c_proj": "MLP down projection (Conv1D)",
}


class DecoderBase(FrozenBase):
    """A causal decoder (Llama or GPT-2 style) that pools the last real token for classification."""

    name = "decoder"
    title = "Causal decoder"
    norm_placement = "pre"
    train_defaults = TrainDefaults(steps=300, lr=1e-2)
    method_option_defaults: Mapping[str, Mapping[str, Any]] = {
        "lora": {"targets": "q_proj,v_proj"}, "qlora": {"targets": "q_proj,v_proj"},
        "ia3": {"targets": "k_proj,v_proj,ffn-act"}, "adapter": {"placement": "after-ffn"}}
    # PEFT's default target mappings for GPT-2: LoRA c_attn; IA3 c_attn + mlp.c_proj (as a feed-forward module,
    # i.e. its input, which is the studio's ffn-act site).
    gpt2_option_defaults: Mapping[str, Mapping[str, Any]] = {
        "lora": {"targets": "c_attn"}, "qlora": {"targets": "c_attn"},
        "ia3": {"targets": "c_attn,ffn-act"}, "adapter": {"placement": "after-ffn"}}

    def __init__(self, cfg: DecoderConfig, tokenizer: Tokenizer, name: str = "decoder", title: str = "",
                 summary: str = "") -> None:
        super().__init__(tokenizer)
        self.cfg = cfg
        self.name = name
        self.title = title or f"{'Llama' if cfg.style == LLAMA else 'GPT-2'}-style decoder"
        self.summary = summary
        self.hidden_size = cfg.hidden_size
        self.num_layers = cfg.num_layers
        if cfg.style == LLAMA:
            self.model = LlamaModel(cfg)
            embeddings = self.model.embed_tokens
            self.input_embedding_path = "model.embed_tokens"
        else:
            self.transformer = GPT2Model(cfg)
            embeddings = self.transformer.wte
            self.input_embedding_path = "transformer.wte"
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:  # one tensor, two uses (as transformers ties them)
            self.lm_head.weight = embeddings.weight
        self.on_meta_device = embeddings.weight.is_meta
        self.freeze()

    # ---- running ---------------------------------------------------------------------------
    def encode(self, token_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token hidden states after the final norm [B, L', D] and the (possibly prompt-extended) mask."""
        stack = self.model if self.cfg.style == LLAMA else self.transformer
        return stack(token_ids, mask)

    def forward(self, token_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden, mask = self.encode(token_ids, mask)
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = (mask.long() * positions).argmax(dim=1)  # the last real token, whatever the padding side
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    # ---- description -----------------------------------------------------------------------
    def method_defaults(self) -> Mapping[str, Mapping[str, Any]]:
        return self.method_option_defaults if self.cfg.style == LLAMA else self.gpt2_option_defaults

    def hf_module(self, module_path: str) -> str | None:
        """transformers' name: the module's own path, except for the studio's weightless slots."""
        return None if module_path.rsplit(".", 1)[-1] in SLOT_NAMES else module_path

    def target_presets(self) -> Mapping[str, tuple[str, ...]]:
        """PEFT-style names for groups of Linear targets: attention, mlp, all-linear (never the LM head)."""
        if self.cfg.style == LLAMA:
            attention, mlp = ("q_proj", "k_proj", "v_proj", "o_proj"), ("gate_proj", "up_proj", "down_proj")
        else:
            attention, mlp = ("c_attn", "attn.c_proj"), ("c_fc", "mlp.c_proj")
        return {"attention": attention, "mlp": mlp, "all-linear": attention + mlp, "all linear": attention + mlp}

    def describe(self) -> str:
        return f"{self.title} (meta device: shapes only)" if self.on_meta_device else self.title

    def _layer_path(self, i: int) -> str:
        return f"model.layers.{i}" if self.cfg.style == LLAMA else f"transformer.h.{i}"

    def _linears(self) -> list[tuple[str, str, int, int]]:
        """(short name, path inside the layer, in, out) in data-flow order."""
        cfg = self.cfg
        d, f = cfg.hidden_size, cfg.intermediate_size
        if cfg.style == LLAMA:
            return [("q_proj", "self_attn.q_proj", d, cfg.q_width),
                    ("k_proj", "self_attn.k_proj", d, cfg.kv_width),
                    ("v_proj", "self_attn.v_proj", d, cfg.kv_width),
                    ("o_proj", "self_attn.o_proj", cfg.q_width, d),
                    ("gate_proj", "mlp.gate_proj", d, f),
                    ("up_proj", "mlp.up_proj", d, f),
                    ("down_proj", "mlp.down_proj", f, d)]
        return [("c_attn", "attn.c_attn", d, 3 * d), ("c_proj", "attn.c_proj", d, d),
                ("c_fc", "mlp.c_fc", d, f), ("c_proj", "mlp.c_proj", f, d)]

    def sites(self) -> list[Site]:
        cfg = self.cfg
        d, f = cfg.hidden_size, cfg.intermediate_size
        stack = "model" if cfg.style == LLAMA else "transformer"
        attn = "self_attn" if cfg.style == LLAMA else "attn"
        no_qlora = {"qlora": QLORA_CONV1D} if cfg.style == GPT2 else {}
        sites = [Site("prompt", PROMPT, "input", f"{stack}.prompt", None, d, d,
                      "soft prompt before the token embeddings (positions 0..n-1)")]
        for i in range(cfg.num_layers):
            at = self._layer_path(i)
            sites.append(Site(f"{at}.{attn}.kv_prefix", KV_PREFIX, "kv", f"{at}.{attn}.kv_prefix", i,
                              cfg.kv_width, cfg.kv_width,
                              f"layer {i} attention keys/values ({cfg.num_kv_heads} K/V heads x {cfg.dim_per_head})"))
            for short, inner, fan_in, fan_out in self._linears():
                if inner in ("mlp.down_proj", "mlp.c_proj"):
                    sites.append(Site(f"{at}.mlp.act_scale", ACTIVATION, "ffn-act", f"{at}.mlp.act_scale", i, f, f,
                                      f"layer {i} MLP activation (the down projection's input)"))
                label = LABELS.get(inner, LABELS.get(short, short))
                sites.append(Site(f"{at}.{inner}", LINEAR, short, f"{at}.{inner}", i, fan_in, fan_out,
                                  f"layer {i} {label}", dict(no_qlora)))
                if inner in ("self_attn.o_proj", "attn.c_proj"):
                    sites.append(Site(f"{at}.attn_adapter", ADAPTER, "after-attn", f"{at}.attn_adapter", i, d, d,
                                      f"layer {i} after attention, before the residual add"))
            sites.append(Site(f"{at}.mlp_adapter", ADAPTER, "after-ffn", f"{at}.mlp_adapter", i, d, d,
                              f"layer {i} after the MLP, before the residual add"))
            norms = ("input_layernorm", "post_attention_layernorm") if cfg.style == LLAMA else ("ln_1", "ln_2")
            for short, norm in zip(("attn-norm", "ffn-norm"), norms, strict=True):  # LayerNorm tuning's sites
                sites.append(Site(f"{at}.{norm}", NORM, short, f"{at}.{norm}", i, d, d, f"layer {i} {norm}"))
        final = "model.norm" if cfg.style == LLAMA else "transformer.ln_f"
        sites.append(Site(final, NORM, "final-norm", final, None, d, d, "final norm"))
        return sites

    def blocks(self) -> list[Block]:
        cfg = self.cfg
        d, v = cfg.hidden_size, cfg.vocab_size
        llama = cfg.style == LLAMA
        norm = "RMSNorm" if llama else "LayerNorm"
        embed_path = "model.embed_tokens" if llama else "transformer.wte"
        embed_name = "embed_tokens" if llama else "wte"
        tied = " = lm_head (tied: one tensor)" if cfg.tie_word_embeddings else ""
        embeds = [Block(embed_path, f"{embed_name} {v}x{d}{tied}", "embedding", embed_path,
                        note="token embeddings" + ("; the LM head reuses this same tensor" if tied else ""))]
        if not llama:
            embeds.append(Block("transformer.wpe", f"wpe {cfg.max_positions}x{d}", "embedding", "transformer.wpe",
                                note="learned absolute positions"))
        blocks = [Block("input", "input tokens", "input", note="token ids and padding mask"),
                  Block("embeddings", "embeddings" + ("" if llama else " + positions"), "embedding", None,
                        children=tuple(embeds),
                        note="rotary positions are applied inside attention (no weights)" if llama else "")]
        for i in range(cfg.num_layers):
            at = self._layer_path(i)
            blocks.append(Block(at, f"layer {i}", "layer", at, i, self._layer_children(at, i, norm)))
        final = "model.norm" if llama else "transformer.ln_f"
        blocks.append(Block(final, f"{norm} {d}", "norm", final, note="final norm of the pre-norm stack"))
        if not cfg.tie_word_embeddings:
            blocks.append(Block("lm_head", f"lm_head {d}->{v}", "output", "lm_head",
                                note="next-token logits; part of the model's memory, not used by the class head"))
        blocks.append(Block("pool", "last-token pool", "pool",
                            note="the last real token's vector: under causal attention it has read the whole text"))
        return blocks

    def _layer_children(self, at: str, i: int, norm: str) -> tuple[Block, ...]:
        cfg = self.cfg
        llama = cfg.style == LLAMA
        d = cfg.hidden_size
        linear = {inner: Block(f"{at}.{inner}", self._linear_label(short, fan_in, fan_out), "linear",
                               f"{at}.{inner}", i)
                  for short, inner, fan_in, fan_out in self._linears()}
        if llama:
            heads = (f"{cfg.num_heads} Q heads, {cfg.num_kv_heads} K/V heads (GQA)" if cfg.grouped
                     else f"{cfg.num_heads} heads")
            attn = Block(f"{at}.self_attn", f"causal self-attention ({heads}) + RoPE", "attention",
                         f"{at}.self_attn", i, tuple(linear[f"self_attn.{s}"] for s in ("q_proj", "k_proj", "v_proj",
                                                                                         "o_proj")),
                         note=("each K/V head is shared by " f"{cfg.num_heads // cfg.num_kv_heads} query heads; "
                               if cfg.grouped else "") + "token i attends to tokens 0..i (and any prefix keys)")
            mlp = Block(f"{at}.mlp", "SwiGLU MLP", "ffn", f"{at}.mlp", i, (
                linear["mlp.gate_proj"], linear["mlp.up_proj"],
                Block(f"{at}.mlp.act_fn", f"{cfg.hidden_act.upper()}(gate) x up", "activation", f"{at}.mlp.act_fn", i),
                linear["mlp.down_proj"]))
            norms = ("input_layernorm", "post_attention_layernorm")
        else:
            attn = Block(f"{at}.attn", f"causal self-attention ({cfg.num_heads} heads)", "attention", f"{at}.attn",
                         i, (linear["attn.c_attn"], linear["attn.c_proj"]),
                         note="c_attn computes q, k and v in one Conv1D; token i attends to tokens 0..i")
            mlp = Block(f"{at}.mlp", "MLP", "ffn", f"{at}.mlp", i, (
                linear["mlp.c_fc"], Block(f"{at}.mlp.act", cfg.hidden_act.upper(), "activation", f"{at}.mlp.act", i),
                linear["mlp.c_proj"]))
            norms = ("ln_1", "ln_2")
        return (Block(f"{at}.{norms[0]}", f"{norm} {d}", "norm", f"{at}.{norms[0]}", i, note="pre-norm"),
                attn,
                Block(f"{at}.attn_add", "add", "add", None, i, note="residual: x + attention(norm(x))", residual=True),
                Block(f"{at}.{norms[1]}", f"{norm} {d}", "norm", f"{at}.{norms[1]}", i, note="pre-norm"),
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

    Two K/V heads for four query heads (grouped-query attention), tied embeddings, rotary positions."""

    train_defaults = TrainDefaults(steps=300, lr=1e-2)

    def __init__(self, tokenizer: Tokenizer, d_model: int = 32, n_heads: int = 4, n_kv_heads: int = 2,
                 n_layers: int = 2, d_ff: int = 64) -> None:
        cfg = DecoderConfig(LLAMA, vocab_size=tokenizer.vocab_size, hidden_size=d_model, num_layers=n_layers,
                            num_heads=n_heads, num_kv_heads=n_kv_heads, intermediate_size=d_ff, max_positions=128,
                            norm_eps=1e-6, tie_word_embeddings=True)
        super().__init__(cfg, tokenizer, "tiny-decoder", "Tiny Llama-style decoder")
