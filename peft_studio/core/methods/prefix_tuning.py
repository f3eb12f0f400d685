"""Prefix tuning: trainable key/value prefixes in each selected attention (Li & Liang, 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..bases.frozen import FrozenBase
from ..bases.sites import KV_PREFIX, Site
from ..errors import AdapterFileError, ConfigError
from ..files.safe_io import expect_shape
from ..model.studio_model import StudioModel
from .config import MAX_SOFT_TOKENS, MethodConfig, option, parse_layers
from .method import PROMPT_SIDE, Method, MethodCard, ShapeChange, code_line, prompt_slot, require_kind
from .prompt_tuning import prompt_settings


class PrefixProjection(nn.Module):
    """PEFT's prefix reparameterisation: Embedding(n, d) -> Linear -> tanh -> Linear(2 d per layer)."""

    def __init__(self, tokens: int, width: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(tokens, width))
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.Tanh(), nn.Linear(hidden, layers * 2 * width))
        self.width = width

    def forward(self) -> torch.Tensor:
        """[layers, 2, n, d]: keys and values for every selected layer."""
        tokens = self.embedding.shape[0]
        return self.mlp(self.embedding).view(tokens, -1, 2, self.width).permute(1, 2, 0, 3)


class KVPrefix(nn.Module):
    """Prepends n keys and values (split into heads) and extends the key mask with ones."""

    def __init__(self, tokens: int, width: int, projection: PrefixProjection | None = None, index: int = 0) -> None:
        super().__init__()
        if projection is None:
            self.keys = nn.Parameter(torch.randn(tokens, width))
            self.values = nn.Parameter(torch.randn(tokens, width))
        # A plain reference, not a submodule: the shared MLP is registered once, in model.extras.
        self.__dict__["projection"] = projection
        self.index = index

    def prefix(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The n prefix keys and values, [n, d] each."""
        parts = self.prefix_parts()
        if len(parts) == 1:
            return parts[0]
        return torch.cat([k for k, _ in parts]), torch.cat([v for _, v in parts])

    def prefix_parts(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The prefix as (keys, values) pieces in order; one piece here (a subclass may keep some frozen)."""
        if self.projection is None:
            return [(self.keys, self.values)]
        keys_values = self.projection()[self.index]
        return [(keys_values[0], keys_values[1])]

    def forward(self, keys: torch.Tensor, values: torch.Tensor, key_mask: torch.Tensor):
        batch, heads, _, head_dim = keys.shape
        parts = self.prefix_parts()

        def heads_view(t: torch.Tensor) -> torch.Tensor:
            return t.view(1, -1, heads, head_dim).transpose(1, 2).expand(batch, -1, -1, -1)

        # each piece joins the keys on its own: a trained piece's gradient is then a tensor of its own size, not a
        # view into the whole prefix's (which would keep the frozen rows' gradient alive too)
        tokens = sum(k.shape[0] for k, _ in parts)
        ones = torch.ones(batch, tokens, dtype=key_mask.dtype, device=key_mask.device)
        keys = torch.cat([*(heads_view(k) for k, _ in parts), keys], dim=2)  # keys L -> L + n
        values = torch.cat([*(heads_view(v) for _, v in parts), values], dim=2)
        return keys, values, torch.cat([ones, key_mask], dim=1)


class PositionShift(nn.Module):
    """In the prompt slot: leaves the tokens alone but starts their positions at n, as PEFT's prefix on BERT
    does (transformers counts the n prefix keys as past tokens)."""

    def __init__(self, tokens: int) -> None:
        super().__init__()
        self.position_offset = tokens  # read by the embeddings: positions n .. n + L - 1
        self.reserved_positions = tokens

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return embeds, mask


POSITION_CHOICES = ("kept", "shifted")


@dataclass
class PrefixTuningConfig(MethodConfig):
    tokens: int = option(8, "prefix length n (attention keys L -> L+n); bounded by the base's positions and the "
                            "memory check, not by a fixed cap", low=1, high=MAX_SOFT_TOKENS)
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")
    prefix_projection: int = option(0, "hidden size of the reparameterisation MLP (0: no projection)",
                                     low=0, high=4096)
    positions: str = option("kept", "token positions: kept (0 .. L-1) or shifted by n as PEFT's prefix on BERT "
                                    "(needed to exchange prefix adapters with PEFT)", choices=POSITION_CHOICES)


class PrefixTuningMethod(Method):
    name = "prefix-tuning"
    family_group = PROMPT_SIDE
    title = "Prefix Tuning"
    config_cls = PrefixTuningConfig
    site_kinds = (KV_PREFIX,)
    claims_kinds = (KV_PREFIX,)
    example_space = {**Method.example_space, "tokens": (1, 3), "prefix_projection": (0, 8),
                     "positions": ("kept", "shifted")}
    peft_space = {"num_virtual_tokens": (2, 4)}
    peft_type = "PREFIX_TUNING"
    peft_unsupported_tasks = {"SEQ_CLS": "PEFT itself cannot run a prefix (prefix tuning, a cartridge) on a "
                                         "*ForSequenceClassification model (PEFT serves it as past_key_values, "
                                         "which transformers' classifiers, BERT's or a decoder's, do not take), so "
                                         "there are no predictions to reproduce"}
    peft_config_fields = {"prefix_projection": ((bool,), "true or false"),
                          "encoder_hidden_size": ((int, type(None)), "a whole number")}
    glyph = "KV"
    colour = "#7a4fd0"
    card = MethodCard(
        where="a key/value prefix in each layer's attention",
        intuition="every layer sees extra trainable context when it attends",
        advantages="more expressive than soft prompts: it reaches every layer's attention",
        limitations="higher implementation complexity; the prefix costs attention time at inference",
        formula="attn(q, [P_k ; K], [P_v ; V]),  keys L -> L + n",
    )

    def selected_sites(self, config: PrefixTuningConfig, base: FrozenBase) -> list[Site]:
        sites = require_kind(base, self.name, KV_PREFIX)
        layers = set(parse_layers(config.layers, base.num_layers))
        chosen = [s for s in sites if s.layer in layers]
        if not chosen:
            raise ConfigError("layers: no attention layer selected")
        return chosen

    def validate(self, config: PrefixTuningConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        if config.positions == "shifted":
            if prompt_slot(base) is None:
                raise ConfigError(f"positions shifted: base {base.name!r} has no token positions to shift")
            if base.position_limit is not None and base.position_limit - config.tokens < 2:
                left = base.position_limit - config.tokens
                raise ConfigError(f"tokens: a shifted prefix of {config.tokens} leaves {left} of the "
                                  f"{base.position_limit} positions of {base.name} for the text")

    def options_for_sites(self, sites: list[Site], base: FrozenBase, current: dict[str, Any]) -> dict[str, Any]:
        layers = sorted({s.layer for s in sites if s.layer is not None})
        every = layers == list(range(base.num_layers))
        return {**current, "layers": None if every else ",".join(map(str, layers))}

    def live_formula(self, config: PrefixTuningConfig) -> str:
        return self.card.formula.replace("+ n", f"+ {config.tokens}")

    def lens(self, experiment: Any, sentence: str) -> list[Any]:
        """Per layer and head, the share of attention the real tokens give the n prefix keys."""
        from ..lenses.attention import attention_weights, front_share_figure, sentence_tokens

        weights = attention_weights(experiment, sentence)
        if not weights:
            return []
        n = self.shape_change(experiment.config).key_tokens
        layers = {s.layer for s in self.selected_sites(experiment.config, experiment.base)}
        prefixed = [w for i, w in enumerate(weights) if i in layers]  # layers without a prefix have none to share
        labels = [f"prefix {i + 1}" for i in range(n)] + sentence_tokens(experiment, sentence)
        return [front_share_figure("prefix-attention", "attention on the prefix keys", prefixed, n, 0,
                                   f"{n} prefix keys before the sentence's keys in {len(prefixed)} layer(s): "
                                   "share of each head's attention they take", labels,
                                   [i for i in range(len(weights)) if i in layers])]

    def code(self, config: PrefixTuningConfig) -> str:
        return code_line(KVPrefix.forward, "heads_view(k) for k, _ in parts), keys")

    def shape_change(self, config: PrefixTuningConfig) -> ShapeChange:
        return ShapeChange(key_tokens=config.tokens)

    def attach(self, model: StudioModel, config: PrefixTuningConfig) -> None:
        sites = self.selected_sites(config, model.base)
        width = sites[0].in_features  # the keys' width: hidden size, or K/V heads x head size under GQA (as PEFT)
        projection = None
        if config.prefix_projection:
            projection = PrefixProjection(config.tokens, width, config.prefix_projection, len(sites))
            model.extras["prefix_projection"] = projection
        for index, site in enumerate(sites):
            model.swap(site.module_path, KVPrefix(config.tokens, width, projection, index))
        shift_positions(model, config)

    def parameter_count(self, config: PrefixTuningConfig, base: FrozenBase) -> int:
        sites = self.selected_sites(config, base)
        layers, n, d, h = len(sites), config.tokens, sites[0].in_features, config.prefix_projection
        if not h:
            return layers * 2 * n * d
        return n * d + (d * h + h) + (h * layers * 2 * d + layers * 2 * d)

    def formula_text(self, config: PrefixTuningConfig, base: FrozenBase) -> str:
        sites = self.selected_sites(config, base)
        layers, n, d = len(sites), config.tokens, sites[0].in_features
        total = self.parameter_count(config, base)
        if not config.prefix_projection:
            return f"layers x 2 x n x d = {layers} x 2 x {n} x {d} = {total:,}"
        h = config.prefix_projection
        return (f"n d + (d h + h) + (h + 1) x layers x 2 d = "
                f"{n}x{d} + ({d}x{h}+{h}) + ({h}+1)x{layers}x2x{d} = {total:,}")

    def shape_notes(self, config: PrefixTuningConfig, base: FrozenBase, seq_len: int) -> list[str]:
        layers = [s.layer for s in self.selected_sites(config, base)]
        notes = [f"attention keys {seq_len} -> {seq_len + config.tokens} (and values) in layers "
                 f"{', '.join(map(str, layers))}; the sequence itself stays {seq_len}"]
        if config.positions == "shifted":
            notes.append(f"token positions {config.tokens} .. {config.tokens + seq_len - 1} (shifted as PEFT's); "
                         f"texts are cut to {(base.position_limit or 0) - config.tokens} tokens")
        return notes

    # ---- Hugging Face PEFT exchange: only with PEFT's shifted positions, on every layer -------------
    def peft_evaluated(self, config: PrefixTuningConfig) -> bool:
        return bool(config.prefix_projection)  # the MLP is evaluated: the file holds a plain prefix

    def peft_export(self, base: FrozenBase, config: PrefixTuningConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        settings, tensors = self.prefix_export(base, config)
        # as PEFT saves a projected prefix: the MLP's settings, and the prefix it computes (loaded as a plain table)
        settings.update(prefix_projection=bool(config.prefix_projection),
                        encoder_hidden_size=config.prefix_projection or settings["token_dim"])
        return settings, tensors

    def prefix_export(self, base: FrozenBase, config: Any) -> tuple[dict, dict[str, torch.Tensor]]:
        """PEFT's prefix fields and its one table (every layer's keys and values as the file holds them)."""
        if config.positions != "shifted":
            raise AdapterFileError(f"export to PEFT format: {PREFIX_DIFFERS}")
        sites = self.selected_sites(config, base)
        if len(sites) != base.num_layers:
            raise AdapterFileError("export to PEFT format: PEFT's prefix covers every layer; this one uses layers "
                                   f"{', '.join(str(s.layer) for s in sites)}")
        # PEFT's layout along the width: [layer 0 keys, layer 0 values, layer 1 keys, ...]; a projection MLP is
        # evaluated, which gives the same prefix (PEFT's saved prefix is the MLP's output too).
        with torch.no_grad():
            parts = [t for s in sites for t in base.get_submodule(s.module_path).prefix()]
        table = torch.cat(parts, dim=1)
        return prefix_settings(base, config.tokens, sites[0].in_features), {"prompt_embeddings": table}

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        if set(tensors) != {"prompt_embeddings"}:
            raise AdapterFileError(f"{where}: prefix tuning expects one tensor prompt_embeddings, found "
                                   f"{', '.join(sorted(tensors)) or 'none'}")
        prefix = tensors["prompt_embeddings"]
        expect_shape(prefix, 2, f"{where}: prompt_embeddings", AdapterFileError, "(n, num_layers x 2 x token_dim)")
        layers, width = peft_config.get("num_layers"), peft_config.get("token_dim")
        if type(layers) is not int or type(width) is not int or prefix.shape[1] != layers * 2 * width:
            raise AdapterFileError(f"{where}: prompt_embeddings has shape {tuple(prefix.shape)}, expected (n, "
                                   f"num_layers x 2 x token_dim) = (n, {layers} x 2 x {width})")
        most = int(PrefixTuningConfig.__dataclass_fields__["tokens"].metadata["high"])
        if prefix.shape[0] > most:
            raise AdapterFileError(f"{where}: {prefix.shape[0]} virtual tokens; the studio takes at most {most}")
        studio = {}
        for i, chunk in enumerate(prefix.split(width, dim=1)):
            studio[f"layers.{i // 2}.attn.kv_prefix.{'values' if i % 2 else 'keys'}"] = chunk
        # PEFT's prefix on BERT shifts the real tokens' positions by n: the studio's option that does the same
        return {"tokens": int(prefix.shape[0]), "positions": "shifted", "prefix_projection": 0}, studio


def shift_positions(model: StudioModel, config: Any) -> None:
    """positions = shifted: the real tokens start at n, as PEFT's prefix (served as past keys) puts them."""
    if config.positions == "shifted":
        model.swap(prompt_slot(model.base), PositionShift(config.tokens))


def prefix_settings(base: FrozenBase, tokens: int, width: int) -> dict[str, Any]:
    """PEFT's prefix fields: the keys' width and heads are the K/V heads' under grouped-query attention (PEFT sizes
    a prefix by num_key_value_heads), every layer of the one transformer stack."""
    settings = prompt_settings(base, tokens)
    head_dim = getattr(base.cfg, "dim_per_head", None) or base.hidden_size // settings["num_attention_heads"]
    return {**settings, "token_dim": width, "num_attention_heads": width // head_dim}


# PEFT's prefix tuning moves the real tokens to positions n..n+L-1 (transformers counts the prefix
# keys as past tokens); the studio's default prefix leaves positions alone, so the two compute different things.
PREFIX_DIFFERS = ("PEFT's prefix tuning shifts the real tokens' positions by the prefix length "
                  "(transformers counts the prefix as past tokens) while this prefix keeps them (positions = kept), "
                  "so the outputs would differ: use positions = shifted to exchange prefix adapters with PEFT")
