"""Decoder families as a table: one row per Hugging Face model_type, read by the one decoder implementation.

A row says how a family is built (norm kind and placement, positions, attention projections and biases,
sliding windows, MLP kind, head tying, module names) and how its config.json is read (which key holds each
size, transformers' defaults, the fields that would change outputs and are refused). `decoder.py` builds and
runs any row; adding a family that fits these columns is adding a row, not a branch.

Reading follows transformers 5's configuration classes (LlamaConfig, MistralConfig, Qwen2Config, GPT2Config):
a missing optional field takes transformers' default. Every field those classes declare is accounted for in
the row — implemented (`keys`, `biases`, `dropouts`, `sliding`, rope), inert (`inert`: read by transformers
without changing the logits, or not read at all) or refused (`refused`) — and a test holds that list to
transformers' own, so a new field cannot be silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

RMS_NORM, LAYER_NORM = "rms", "layernorm"
ROTARY, LEARNED = "rotary", "learned"
NO_WINDOW, EVERY_LAYER, LAYER_TYPES = "none", "every layer", "layer types"

# Fields every transformers config has (PreTrainedConfig) that never change a decoder's logits.
COMMON_INERT = ("architectures", "chunk_size_feed_forward", "dtype", "torch_dtype", "id2label", "label2id",
                "is_encoder_decoder", "output_hidden_states", "problem_type", "return_dict", "transformers_version",
                "model_type", "_name_or_path", "use_cache", "initializer_range", "bos_token_id", "eos_token_id",
                "_attn_implementation", "attn_implementation", "num_labels", "output_attentions")


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class DecoderFamily:
    """One decoder family: its structure, its module names and how to read its config.json."""

    model_type: str
    title: str
    style: str  # "llama" (RMSNorm, rotary, gated MLP, q/k/v/o) or "gpt2" (LayerNorm, learned, fused c_attn)
    # ---- structure ------------------------------------------------------------------------------
    norm: str  # RMS_NORM or LAYER_NORM (pre-norm in every family here: x + f(norm(x)), a final norm)
    positions: str  # ROTARY (inside attention, no weights) or LEARNED (an embedding added to the tokens)
    fused_qkv: bool  # one projection computes q, k and v (GPT-2's c_attn)
    conv1d: bool  # weights stored [in, out] (GPT-2's Conv1D) instead of nn.Linear's [out, in]
    gated_mlp: bool  # down(act(gate x) * up x) (SwiGLU) instead of down(act(up x))
    sliding: str  # NO_WINDOW, EVERY_LAYER (Mistral) or LAYER_TYPES (Qwen2: use_sliding_window, max_window_layers)
    # ---- module names (transformers' own, so state dicts and PEFT target names carry over) ---------------------
    stack: str  # "model" / "transformer"
    layer_list: str  # "layers" / "h"
    token_embedding: str  # "embed_tokens" / "wte"
    position_embedding: str | None  # None / "wpe"
    norms: tuple[str, str]  # before attention, before the MLP
    final_norm: str
    attention: str  # "self_attn" / "attn"
    projections: tuple[str, ...]  # q, k, v, o (separate) or qkv, o (fused)
    mlp_projections: tuple[str, ...]  # gate, up, down (gated) or up, down
    activation: str  # the activation module's name inside the MLP
    # ---- config.json ------------------------------------------------------------------------------
    keys: Mapping[str, str]  # studio field -> config.json key
    required: tuple[str, ...]  # studio fields that have no default worth trusting
    defaults: Mapping[str, Any]  # transformers' class defaults for the optional ones (None: computed)
    biases: Mapping[str, bool | str]  # "qkv", "o", "mlp": always/never (bool) or the config key that decides
    dropouts: Mapping[str, tuple[str, float]]  # "attention", "residual", "embedding" -> (config key, default)
    inert: tuple[str, ...]  # this family's fields that do not change the logits (besides COMMON_INERT)
    refused: Mapping[str, Callable[[Any], bool]]  # config key -> "this value would change outputs" (refused)
    # ---- around it ----------------------------------------------------------------------------------
    causal_lm_class: str  # transformers' *ForCausalLM (README, recipe, tests)
    layer_class: str  # transformers' decoder-layer class (FSDP wraps one per unit)
    legacy_buffers: tuple[str, ...] = ()  # tensor-name endings old checkpoints carry that hold no weights
    method_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    # ---- derived names ------------------------------------------------------------------------------
    def layer_path(self, i: int) -> str:
        return f"{self.stack}.{self.layer_list}.{i}"

    @property
    def embedding_path(self) -> str:
        return f"{self.stack}.{self.token_embedding}"

    @property
    def final_norm_path(self) -> str:
        return f"{self.stack}.{self.final_norm}"

    def linears(self) -> list[tuple[str, str]]:
        """(short name, path inside a layer) of every Linear / Conv1D of a layer, in data-flow order."""
        attn = [(name, f"{self.attention}.{name}") for name in self.projections]
        mlp = [(name, f"mlp.{name}") for name in self.mlp_projections]
        return attn + mlp

    @property
    def attention_projections(self) -> tuple[str, ...]:
        """The PEFT names of the attention's Linears (a name the MLP shares is qualified: attn.c_proj)."""
        return tuple(self._peft_name(name) for name in self.projections)

    @property
    def mlp_names(self) -> tuple[str, ...]:
        return tuple(self._peft_name(name, "mlp") for name in self.mlp_projections)

    def _peft_name(self, name: str, where: str | None = None) -> str:
        shared = set(self.projections) & set(self.mlp_projections)
        if name not in shared:
            return name
        return f"{where or self.attention}.{name}"

    @property
    def output_projection(self) -> str:
        return f"{self.attention}.{self.projections[-1]}"

    @property
    def down_projection(self) -> str:
        return f"mlp.{self.mlp_projections[-1]}"


def _true(value: Any) -> bool:
    return bool(value)


def _not_one(value: Any) -> bool:
    return value is not None and value != 1


LLAMA_KEYS = {"vocab_size": "vocab_size", "hidden_size": "hidden_size", "num_layers": "num_hidden_layers",
              "num_heads": "num_attention_heads", "num_kv_heads": "num_key_value_heads",
              "intermediate_size": "intermediate_size", "max_positions": "max_position_embeddings",
              "norm_eps": "rms_norm_eps", "hidden_act": "hidden_act", "tie_word_embeddings": "tie_word_embeddings",
              "head_dim": "head_dim", "pad_token_id": "pad_token_id"}
LLAMA_REQUIRED = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size")
LLAMA_STRUCTURE = dict(style="llama", norm=RMS_NORM, positions=ROTARY, fused_qkv=False, conv1d=False, gated_mlp=True,
                       stack="model", layer_list="layers", token_embedding="embed_tokens", position_embedding=None,
                       norms=("input_layernorm", "post_attention_layernorm"), final_norm="norm",
                       attention="self_attn", projections=("q_proj", "k_proj", "v_proj", "o_proj"),
                       mlp_projections=("gate_proj", "up_proj", "down_proj"), activation="act_fn",
                       legacy_buffers=("rotary_emb.inv_freq",))
# transformers reads these for Llama-style models without any effect on the logits
LLAMA_INERT = ("pretraining_tp",  # transformers 5 does not read it (4.x sliced matmuls: same numbers)
               "rope_theta", "rope_scaling", "rope_parameters",  # read by rope.py
               "max_window_layers", "use_sliding_window", "sliding_window", "layer_types",  # per family below
               "attention_dropout", "attention_bias", "mlp_bias", "original_max_position_embeddings")
# the studio keeps Llama's defaults where PEFT's differ (the Qwen2/IA3 defaults are issue 19's to follow)
# PEFT's default mappings (peft/utils/constants.py): IA3 scales down_proj's input (a feed-forward module: the
# studio's ffn-act site), and feedforward_modules defaults to down_proj when targets are named too.
LLAMA_METHODS = {"lora": {"targets": "q_proj,v_proj"}, "qlora": {"targets": "q_proj,v_proj"},
                 "ia3": {"targets": "k_proj,v_proj,ffn-act", "feedforward": "down_proj"},
                 "adapter": {"placement": "after-ffn"}}
QWEN2_METHODS = {**LLAMA_METHODS, "ia3": {"targets": "q_proj,v_proj,ffn-act", "feedforward": "down_proj"},
                 "ln-tuning": {"targets": "post_attention_layernorm"}}  # Qwen2's own PEFT defaults
REFUSED_EVERYWHERE = {"quantization_config": _true, "pruned_heads": _true, "add_cross_attention": _true,
                      "partial_rotary_factor": _not_one}

FAMILIES: dict[str, DecoderFamily] = {}


def register_family(family: DecoderFamily) -> None:
    FAMILIES[family.model_type] = family


register_family(DecoderFamily(
    model_type="llama", title="Llama", **LLAMA_STRUCTURE, sliding=NO_WINDOW,
    keys=LLAMA_KEYS, required=LLAMA_REQUIRED,
    defaults={"num_kv_heads": None, "max_positions": 2048, "norm_eps": 1e-6, "hidden_act": "silu",
              "tie_word_embeddings": False, "head_dim": None, "pad_token_id": None},
    biases={"qkv": "attention_bias", "o": "attention_bias", "mlp": "mlp_bias"},
    dropouts={"attention": ("attention_dropout", 0.0)}, inert=LLAMA_INERT, refused=REFUSED_EVERYWHERE,
    causal_lm_class="LlamaForCausalLM", layer_class="LlamaDecoderLayer", method_defaults=LLAMA_METHODS))
register_family(DecoderFamily(
    model_type="mistral", title="Mistral", **LLAMA_STRUCTURE, sliding=EVERY_LAYER,
    keys=LLAMA_KEYS, required=LLAMA_REQUIRED,
    defaults={"num_kv_heads": 8, "max_positions": 4096 * 32, "norm_eps": 1e-6, "hidden_act": "silu",
              "tie_word_embeddings": False, "head_dim": None, "pad_token_id": None, "sliding_window": 4096},
    biases={"qkv": False, "o": False, "mlp": False},
    dropouts={"attention": ("attention_dropout", 0.0)}, inert=LLAMA_INERT, refused=REFUSED_EVERYWHERE,
    causal_lm_class="MistralForCausalLM", layer_class="MistralDecoderLayer", method_defaults=LLAMA_METHODS))
register_family(DecoderFamily(
    model_type="qwen2", title="Qwen2", **LLAMA_STRUCTURE, sliding=LAYER_TYPES,
    keys=LLAMA_KEYS, required=LLAMA_REQUIRED,
    defaults={"num_kv_heads": 32, "max_positions": 32768, "norm_eps": 1e-6, "hidden_act": "silu",
              "tie_word_embeddings": False, "head_dim": None, "pad_token_id": None, "sliding_window": 4096,
              "use_sliding_window": False, "max_window_layers": 28},
    biases={"qkv": True, "o": False, "mlp": False},
    dropouts={"attention": ("attention_dropout", 0.0)}, inert=LLAMA_INERT, refused=REFUSED_EVERYWHERE,
    causal_lm_class="Qwen2ForCausalLM", layer_class="Qwen2DecoderLayer", method_defaults=QWEN2_METHODS))
register_family(DecoderFamily(
    model_type="gpt2", title="GPT-2", style="gpt2", norm=LAYER_NORM, positions=LEARNED, fused_qkv=True, conv1d=True,
    gated_mlp=False, sliding=NO_WINDOW, stack="transformer", layer_list="h", token_embedding="wte",
    position_embedding="wpe", norms=("ln_1", "ln_2"), final_norm="ln_f", attention="attn",
    projections=("c_attn", "c_proj"), mlp_projections=("c_fc", "c_proj"), activation="act",
    keys={"vocab_size": "vocab_size", "hidden_size": "n_embd", "num_layers": "n_layer", "num_heads": "n_head",
          "intermediate_size": "n_inner", "max_positions": "n_positions", "norm_eps": "layer_norm_epsilon",
          "hidden_act": "activation_function", "tie_word_embeddings": "tie_word_embeddings",
          "scale_attention": "scale_attn_weights", "scale_by_layer": "scale_attn_by_inverse_layer_idx"},
    required=("vocab_size", "hidden_size", "num_layers", "num_heads"),
    defaults={"intermediate_size": None, "max_positions": 1024, "norm_eps": 1e-5, "hidden_act": "gelu_new",
              "tie_word_embeddings": True, "scale_attention": True, "scale_by_layer": False},
    biases={"qkv": True, "o": True, "mlp": True},
    dropouts={"attention": ("attn_pdrop", 0.1), "residual": ("resid_pdrop", 0.1), "embedding": ("embd_pdrop", 0.1)},
    inert=("n_ctx", "summary_type", "summary_use_proj", "summary_activation", "summary_proj_to_labels",
           "summary_first_dropout", "summary_last_dropout", "pad_token_id",
           "reorder_and_upcast_attn",  # the same softmax in float32 (and transformers' default SDPA ignores it)
           "attn_pdrop", "resid_pdrop", "embd_pdrop"),
    refused=REFUSED_EVERYWHERE, causal_lm_class="GPT2LMHeadModel", layer_class="GPT2Block",
    legacy_buffers=("attn.bias", "attn.masked_bias"),
    method_defaults={"lora": {"targets": "c_attn"}, "qlora": {"targets": "c_attn"},
                     "ia3": {"targets": "c_attn,ffn-act", "feedforward": "mlp.c_proj"},
                     "adapter": {"placement": "after-ffn"}}))


def family(model_type: str) -> DecoderFamily:
    return FAMILIES[model_type]


def decoder_module(name: str) -> str | None:
    """`name` when it is a module path of some family (`model.layers.3.self_attn.q_proj`, `transformer.h.0.ln_1`,
    `model.norm`): decoder modules keep transformers' names, so a PEFT key needs no translation."""
    for fam in FAMILIES.values():
        inside = f"{fam.stack}.{fam.layer_list}."
        if name.startswith(inside) and name[len(inside):].split(".", 1)[0].isdigit() and name.count(".") >= 3:
            return name
        if name in (fam.final_norm_path, fam.embedding_path):
            return name
    return None


def supported_types() -> tuple[str, ...]:
    return tuple(FAMILIES)
