"""LLaMA-Adapter's adaption prompt: adapter_len trainable prompt vectors in each of the top adapter_layers attention
layers of a decoder, read through the layer's own key and value projections with a softmax of their own, and added
to the attention's output through a gate that starts at zero (Zhang et al., 2023; PEFT's ADAPTION_PROMPT,
peft/tuners/adaption_prompt).

Follows PEFT 0.21's AdaptedAttention: with q the layer's (rotated) queries and P the [1, n, d] prompt,

    out = attn(x) + o_proj( g * softmax(q k_proj(P)^T / sqrt(head_dim)) v_proj(P) )

(GPT-2: the keys and values from c_attn, and no output projection, as PEFT's AdaptedAttentionGPT). The gate g is one
number per layer, zero at the start, so the model starts unchanged however P is drawn ("zero-init attention").
PEFT applies it to the model types in its TRANSFORMERS_MODEL_CONFIG only (llama, mistral, gpt2); other decoders
and encoders are refused with that reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..bases.frozen import FrozenBase
from ..bases.sites import GATED_PROMPT, Site
from ..errors import AdapterFileError, ConfigError
from ..files.safe_io import expect_shape
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .method import PROMPT_SIDE, Method, MethodCard, code_line
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys, unknown

# PEFT's TRANSFORMERS_MODEL_CONFIG: model type -> (its attention module's name, whether the prompt's output goes
# through the output projection: GPT-2's does not)
PEFT_MODEL_TYPES = {"llama": ("self_attn", True), "mistral": ("self_attn", True), "gpt2": ("attn", False)}
LEAVES = ("adaption_prompt", "adaption_gate")  # PEFT's tensor names


class GatedPrompt(nn.Module):
    """One attention layer's adaption prompt [1, n, d] and its gate [1], in the attention's gated-prompt slot."""

    def __init__(self, tokens: int, width: int, project_output: bool) -> None:
        super().__init__()
        self.project_output = project_output
        self.adaption_prompt = nn.Parameter(torch.empty(1, tokens, width).normal_())  # N(0, 1), as PEFT
        self.adaption_gate = nn.Parameter(torch.zeros(1))  # zero-init: the model starts unchanged

    def forward(self, queries: torch.Tensor, output: torch.Tensor, attention: nn.Module) -> torch.Tensor:
        batch, heads, length, head_dim = queries.shape
        prompt = self.adaption_prompt.to(queries.dtype)
        names = attention.fam.projections
        if attention.fam.fused_qkv:  # GPT-2: keys and values from c_attn (its bias included), as PEFT
            _, keys, values = getattr(attention, names[0])(prompt).split(
                (attention.q_width, attention.kv_width, attention.kv_width), dim=2)
        else:
            keys, values = getattr(attention, names[1])(prompt), getattr(attention, names[2])(prompt)
        kv_heads = keys.shape[-1] // head_dim
        keys = keys.view(1, -1, kv_heads, head_dim).transpose(1, 2).repeat_interleave(heads // kv_heads, dim=1)
        values = values.view(1, -1, kv_heads, head_dim).transpose(1, 2).repeat_interleave(heads // kv_heads, dim=1)
        scores = queries @ keys.transpose(2, 3) / math.sqrt(head_dim)
        scores = self.adaption_gate * F.softmax(scores, dim=-1, dtype=torch.float32).to(queries.dtype)
        added = (scores @ values).transpose(1, 2).reshape(batch, length, -1)
        if self.project_output:
            added = getattr(attention, names[-1])(added)
        return output + added


@dataclass
class AdaptionPromptConfig(MethodConfig):
    adapter_len: int = option(10, "prompt vectors n in each adapted attention layer", low=1, high=4096)
    adapter_layers: int = option(0, "how many attention layers, counted from the top, get a prompt (0: every "
                                    "layer)", low=0, high=4096)


class AdaptionPromptMethod(Method):
    family_group = PROMPT_SIDE
    name = "adaption-prompt"
    title = "LLaMA-Adapter"
    config_cls = AdaptionPromptConfig
    site_kinds = (GATED_PROMPT,)
    claims_kinds = (GATED_PROMPT,)
    example_space = {**Method.example_space, "adapter_len": (1, 3, 7), "adapter_layers": (0, 1, 2)}
    peft_type = "ADAPTION_PROMPT"
    exchange_tolerance = None  # PEFT applies it to decoders only: compared on decoder checkpoints, not on MiniLM
    peft_config_fields = {"adapter_len": ((int,), "a whole number"), "adapter_layers": ((int,), "a whole number"),
                          "target_modules": ((str,), "the attention modules' name")}
    glyph = "g·P"
    colour = "#b9770e"
    card = MethodCard(
        where="inside the top layers' attention: n prompt vectors with their own softmax, added through a gate",
        intuition="let the top layers attend to a learned prompt, but start with the gate closed so training "
                  "opens it only as far as it helps",
        advantages="few parameters (n x d + 1 per layer); the zero gate means no disruption at the start, so "
                   "training is stable from the first step",
        limitations="decoders only (PEFT: Llama, Mistral, GPT-2); the prompt costs attention time at inference",
        formula="out = attn(x) + W_o (g · softmax(q (W_k P)^T / √d_h) W_v P),  g = 0 at the start",
    )

    # ---- where it goes ----------------------------------------------------------------------------------
    def refusal(self, base: FrozenBase) -> str | None:
        """Why PEFT's adaption prompt does not apply to this base, or None."""
        cfg = getattr(base, "cfg", None)
        model_type = getattr(getattr(cfg, "fam", None), "model_type", None)
        if model_type is None or not any(s.kind == GATED_PROMPT for s in base.site_index().sites):
            return (f"base {base.name!r} is not a decoder: LLaMA-Adapter's prompt sits in a decoder's attention "
                    "(PEFT applies it to llama, mistral and gpt2 models)")
        if model_type not in PEFT_MODEL_TYPES:
            return (f"PEFT's adaption prompt supports model types {', '.join(PEFT_MODEL_TYPES)} only (its "
                    f"TRANSFORMERS_MODEL_CONFIG), not {model_type!r}")
        if cfg.q_width != cfg.hidden_size or cfg.hidden_size % cfg.kv_width:
            return (f"PEFT's adaption prompt reshapes the keys by hidden_size / k_proj's width, which needs heads x "
                    f"head_dim = hidden_size and K/V widths dividing it ({cfg.q_width}, {cfg.kv_width} and "
                    f"{cfg.hidden_size} here)")
        return None

    def layers_in_force(self, config: AdaptionPromptConfig, base: FrozenBase) -> int:
        return config.adapter_layers or base.num_layers

    def selected_sites(self, config: AdaptionPromptConfig, base: FrozenBase) -> list[Site]:
        reason = self.refusal(base)
        if reason:
            raise ConfigError(f"{self.name} cannot be used on base {base.name!r}: {reason}")
        if config.adapter_layers > base.num_layers:
            raise ConfigError(f"adapter_layers: {config.adapter_layers} layers from the top, but base {base.name!r} "
                              f"has {base.num_layers}")
        top = base.num_layers - self.layers_in_force(config, base)
        return [s for s in base.site_index().sites if s.kind == GATED_PROMPT and s.layer is not None
                and s.layer >= top]

    def options_for_sites(self, sites: list[Site], base: FrozenBase, current: dict[str, Any]) -> dict[str, Any]:
        """PEFT adapts the top layers: a click down to layer i means every layer from i to the top."""
        lowest = min((s.layer for s in sites if s.layer is not None), default=base.num_layers - 1)
        layers = base.num_layers - lowest
        return {**current, "adapter_layers": 0 if layers == base.num_layers else layers}

    def effective_options(self, config: AdaptionPromptConfig, base: FrozenBase) -> dict[str, Any]:
        values = config.to_dict()
        values["adapter_layers"] = self.layers_in_force(config, base)
        return values

    def attach(self, model: StudioModel, config: AdaptionPromptConfig) -> None:
        project = PEFT_MODEL_TYPES[model.base.cfg.fam.model_type][1]
        for site in self.selected_sites(config, model.base):
            model.swap(site.module_path, GatedPrompt(config.adapter_len, site.in_features, project))

    def parameter_count(self, config: AdaptionPromptConfig, base: FrozenBase) -> int:
        return len(self.selected_sites(config, base)) * (config.adapter_len * base.hidden_size + 1)

    def formula_text(self, config: AdaptionPromptConfig, base: FrozenBase) -> str:
        layers, n, d = len(self.selected_sites(config, base)), config.adapter_len, base.hidden_size
        return f"layers x (n x d + 1 gate) = {layers} x ({n} x {d} + 1) = {self.parameter_count(config, base):,}"

    def live_formula(self, config: AdaptionPromptConfig) -> str:
        return self.card.formula + f",  P: {config.adapter_len} x d"

    def code(self, config: AdaptionPromptConfig) -> str:
        return code_line(GatedPrompt.forward, "scores = self.adaption_gate *")

    def site_glyph(self, config: AdaptionPromptConfig, base: FrozenBase, site: Site) -> str:
        """The gate as it is now (g=0 until training opens it)."""
        module = base.get_submodule(site.module_path)
        gate = getattr(module, "adaption_gate", None)
        if gate is None or gate.is_meta:
            return self.glyph
        return f"g={float(gate.detach()[0]):.2f}"

    def lens(self, experiment: Any, sentence: str) -> list[Any]:
        """How far training opened each layer's gate, and how far its prompt moved in size."""
        from ..lenses import LensFigure

        rows = [(site.layer, float(module.adaption_gate.detach()[0]), float(module.adaption_prompt.detach().norm()))
                for site in self.selected_sites(experiment.config, experiment.base)
                for module in [experiment.base.get_submodule(site.module_path)] if isinstance(module, GatedPrompt)]
        if not rows or experiment.base.on_meta_device:
            return []
        gates = [gate for _, gate, _ in rows]
        return [LensFigure("gates", "LLaMA-Adapter's gate per adapted layer", "",
                           {"layers": float(len(rows)), "largest |gate|": max(abs(g) for g in gates)},
                           {"magnitude": gates}, rows,
                           "each gate starts at 0: how much of its prompt's attention a layer lets through",
                           ["layer", "gate", "prompt norm"])]

    def shape_notes(self, config: AdaptionPromptConfig, base: FrozenBase, seq_len: int) -> list[str]:
        layers = [s.layer for s in self.selected_sites(config, base)]
        return [f"layers {', '.join(map(str, layers))}: each query also attends to {config.adapter_len} prompt "
                f"vectors (a separate softmax over {config.adapter_len} keys); the sequence stays {seq_len}",
                "the gate starts at 0: the model's outputs are unchanged until training opens it"]

    # ---- Hugging Face PEFT exchange ---------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: AdaptionPromptConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        modules = modules_of(base, GatedPrompt)
        if not modules:
            raise AdapterFileError("export to PEFT format: the model has no adaption prompt")
        tensors: dict[str, torch.Tensor] = {}
        for path, module in modules:
            attention = hf_name(path.rsplit(".", 1)[0], base)  # PEFT's tensors sit on the attention module
            tensors[f"{KEY_PREFIX}{attention}.adaption_prompt"] = module.adaption_prompt
            tensors[f"{KEY_PREFIX}{attention}.adaption_gate"] = module.adaption_gate
        target = PEFT_MODEL_TYPES[base.cfg.fam.model_type][0]
        settings = {"adapter_len": config.adapter_len, "adapter_layers": len(modules), "target_modules": target}
        return settings, tensors

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        length, layers = peft_config.get("adapter_len"), peft_config.get("adapter_layers")
        for name, value in (("adapter_len", length), ("adapter_layers", layers)):
            if type(value) is not int or value < 1:
                raise AdapterFileError(f"{where}: {name} must be a whole number of at least 1 (got {value!r})")
        studio: dict[str, torch.Tensor] = {}
        for module, parts in split_module_keys(tensors, LEAVES, where, "an adaption-prompt").items():
            if set(parts) != set(LEAVES):
                raise unknown(where, module, "needs both adaption_prompt and adaption_gate")
            prompt, gate = parts["adaption_prompt"], parts["adaption_gate"]
            expect_shape(prompt, 3, f"{where}: {module}.adaption_prompt", AdapterFileError, "(1, n, d)")
            if prompt.shape[0] != 1 or prompt.shape[1] != length:
                raise unknown(where, f"{module}.adaption_prompt", f"has shape {tuple(prompt.shape)}; expected "
                                                                  f"(1, {length}, d) for adapter_len {length}")
            if tuple(gate.shape) != (1,):
                raise unknown(where, f"{module}.adaption_gate", f"has shape {tuple(gate.shape)}; expected (1,)")
            studio[f"{module}.gated_prompt.adaption_prompt"] = prompt
            studio[f"{module}.gated_prompt.adaption_gate"] = gate
        if len(studio) != 2 * layers:
            raise AdapterFileError(f"{where}: adapter_layers is {layers}, but the file holds prompts for "
                                   f"{len(studio) // 2} layers")
        return {"adapter_len": length, "adapter_layers": layers}, studio

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        reason = self.refusal(base)
        if reason:
            raise AdapterFileError(f"{where}: {reason}")
