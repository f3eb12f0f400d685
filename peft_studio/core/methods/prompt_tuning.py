"""Prompt tuning: n trainable soft-prompt vectors in front of the token embeddings (Lester et al., 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..bases.frozen import FrozenBase
from ..bases.sites import PROMPT, Site
from ..errors import AdapterFileError, ConfigError
from ..files.safe_io import expect_shape
from ..model.studio_model import StudioModel
from .config import MAX_SOFT_TOKENS, MethodConfig, option
from .method import PROMPT_SIDE, Method, MethodCard, ShapeChange, code_line, require_kind
from .peft_format import modules_of

POOL_CHOICES = ("prompt-and-text", "text")


class PromptVectors(nn.Module):
    """In the prompt slot: n vectors before the sequence, marked as real tokens; subclasses say where the vectors
    come from (a trained table here, an encoder's output in P-tuning).

    Pooling (a stated choice): "prompt-and-text" pools over the n prompt positions too (the mean over
    prompt + real tokens; [CLS] pooling takes position 0, the first prompt vector); "text" pools over
    the real tokens only (their mean; [CLS] pooling takes the real [CLS] at position n)."""

    def __init__(self, tokens: int, pool_over: str = POOL_CHOICES[0]) -> None:
        super().__init__()
        self.tokens = tokens
        self.pool_over = pool_over
        self.reserved_positions = tokens  # the prompt takes n of the base's position embeddings

    def vectors(self) -> torch.Tensor:
        """The n prompt vectors [n, d]."""
        raise NotImplementedError

    def pool_positions(self, hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The positions the base pools over."""
        if self.pool_over == "text":
            return hidden[:, self.tokens:], mask[:, self.tokens:]
        return hidden, mask

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = embeds.shape[0]
        prompt = self.vectors().unsqueeze(0).expand(batch, -1, -1)
        prompt_mask = torch.ones(batch, self.tokens, dtype=mask.dtype, device=mask.device)
        return torch.cat([prompt, embeds], dim=1), torch.cat([prompt_mask, mask], dim=1)


class SoftPrompt(PromptVectors):
    """Prompt tuning's n learned vectors."""

    def __init__(self, tokens: int, width: int, pool_over: str = POOL_CHOICES[0]) -> None:
        super().__init__(tokens, pool_over)
        self.prompt = nn.Parameter(torch.randn(tokens, width))  # N(0, 1), as PEFT's random init

    def vectors(self) -> torch.Tensor:
        return self.prompt


@dataclass
class PromptTuningConfig(MethodConfig):
    tokens: int = option(8, "number of soft-prompt vectors n (sequence length L -> L+n); bounded by the base's "
                            "positions and the memory check, not by a fixed cap", low=1, high=MAX_SOFT_TOKENS)
    pool_over: str = option("prompt-and-text", "positions the pooled vector averages: prompt-and-text (the n prompt "
                                               "vectors count as tokens) or text (real tokens only)",
                            choices=POOL_CHOICES)


class PromptTuningMethod(Method):
    name = "prompt-tuning"
    family_group = PROMPT_SIDE
    title = "Prompt Tuning"
    config_cls = PromptTuningConfig
    site_kinds = (PROMPT,)
    claims_kinds = (PROMPT,)
    example_space = {**Method.example_space, "tokens": (1, 3, 6), "pool_over": ("prompt-and-text", "text")}
    peft_space = {"num_virtual_tokens": (2, 5)}
    peft_type = "PROMPT_TUNING"
    glyph = "P"
    colour = "#d14d8b"
    card = MethodCard(
        where="before the input embedding: n soft-prompt vectors",
        intuition="feed the model a soft prompt: learned vectors, not readable words",
        advantages="extremely few parameters; one tiny vector set per task",
        limitations="limited transformation power: it only touches the input side",
        formula="x' = [P ; E(tokens)],  L -> L + n",
    )

    def selected_sites(self, config: PromptTuningConfig, base: FrozenBase) -> list[Site]:
        return require_kind(base, self.name, PROMPT)[:1]

    def validate(self, config: PromptTuningConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        check_positions(config.tokens, base, "soft-prompt vectors")
        if config.pool_over == "text" and not base.num_layers:
            raise ConfigError(f"pool_over text: base {base.name!r} has no attention, so the prompt could reach the "
                              "pooled vector only by being pooled (use prompt-and-text)")

    def live_formula(self, config: PromptTuningConfig) -> str:
        return self.card.formula.replace("+ n", f"+ {config.tokens}")

    def attention_lens(self, experiment: Any, sentence: str) -> list[Any]:
        from ..lenses.attention import attention_weights, front_share_figure, sentence_tokens

        weights = attention_weights(experiment, sentence)
        n = self.shape_change(experiment.config).input_tokens
        labels = [f"soft {i + 1}" for i in range(n)] + sentence_tokens(experiment, sentence)
        return [front_share_figure("prompt-attention", "attention on the soft tokens", weights, n, n,
                                   f"share of each head's attention the real tokens give the {n} soft tokens",
                                   labels)] if weights else []

    def lens(self, experiment: Any, sentence: str) -> list[Any]:
        """Each soft token's nearest words in the base's own vocabulary."""
        from ..lenses.activations import soft_token_figure

        table = experiment.base.input_embeddings()
        modules = modules_of(experiment.base, PromptVectors)  # prompt tuning's table, P-tuning's encoder output
        if table is None or not modules or table.weight.is_meta:
            return []
        pad = getattr(experiment.tokenizer, "pad_id", 0)
        with torch.no_grad():
            vectors = modules[0][1].vectors()
        return [soft_token_figure(vectors, table.weight, experiment.tokenizer.decode, skip=(pad,)),
                *self.attention_lens(experiment, sentence)]

    def code(self, config: PromptTuningConfig) -> str:
        return code_line(PromptVectors.forward, "torch.cat([prompt, embeds]")

    def shape_change(self, config: PromptTuningConfig) -> ShapeChange:
        return ShapeChange(input_tokens=config.tokens)

    def attach(self, model: StudioModel, config: PromptTuningConfig) -> None:
        site = self.selected_sites(config, model.base)[0]
        model.swap(site.module_path, SoftPrompt(config.tokens, site.in_features, config.pool_over))

    def parameter_count(self, config: PromptTuningConfig, base: FrozenBase) -> int:
        return config.tokens * self.selected_sites(config, base)[0].in_features

    def formula_text(self, config: PromptTuningConfig, base: FrozenBase) -> str:
        return f"n x d = {config.tokens} x {base.hidden_size} = {self.parameter_count(config, base):,}"

    def shape_notes(self, config: PromptTuningConfig, base: FrozenBase, seq_len: int) -> list[str]:
        notes = [f"sequence length {seq_len} -> {seq_len + config.tokens}",
                 f"soft prompt {config.tokens}x{base.hidden_size} concatenated before the token embeddings",
                 "pooling over " + ("the prompt and the text" if config.pool_over != "text" else "the text only")]
        if base.position_limit:
            notes.append(f"texts are cut to {base.position_limit - config.tokens} tokens: the prompt takes "
                         f"{config.tokens} of the {base.position_limit} positions")
        return notes

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: PromptTuningConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        modules = modules_of(base, SoftPrompt)
        if not modules:
            raise AdapterFileError("export to PEFT format: the model has no soft prompt")
        prompt = modules[0][1].prompt
        settings = {**prompt_settings(base, prompt.shape[0]), "prompt_tuning_init": "RANDOM",
                    "prompt_tuning_init_text": None, "tokenizer_name_or_path": None}
        return settings, {"prompt_embeddings": prompt}

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        if set(tensors) != {"prompt_embeddings"}:
            raise AdapterFileError(f"{where}: prompt tuning expects one tensor prompt_embeddings, found "
                                   f"{', '.join(sorted(tensors)) or 'none'}")
        if peft_config.get("num_transformer_submodules", 1) != 1:
            submodules = peft_config.get("num_transformer_submodules")
            raise AdapterFileError(f"{where}: num_transformer_submodules {submodules} is for encoder-decoder models; "
                                   "a BERT encoder has 1")
        prompt = tensors["prompt_embeddings"]
        expect_shape(prompt, 2, f"{where}: prompt_embeddings", AdapterFileError, "(n, d)")
        for name, size in (("num_virtual_tokens", prompt.shape[0]), ("token_dim", prompt.shape[1])):
            if peft_config.get(name) is not None and peft_config[name] != size:
                raise AdapterFileError(f"{where}: prompt_embeddings has shape {tuple(prompt.shape)}, but "
                                       f"adapter_config.json says {name}={peft_config[name]}")
        most = int(PromptTuningConfig.__dataclass_fields__["tokens"].metadata["high"])
        if prompt.shape[0] > most:
            raise AdapterFileError(f"{where}: {prompt.shape[0]} virtual tokens; the studio takes at most {most}")
        return {"tokens": int(prompt.shape[0])}, {"embeddings.prompt.prompt": prompt}

    def peft_notes(self, config: PromptTuningConfig, base: FrozenBase) -> list[str]:
        n = config.tokens
        if config.pool_over == "text":
            positions = [f"hidden = hidden[:, {n}:]  # pool_over = text: leave the {n} prompt positions out"]
        else:
            positions = [f"mask = torch.cat([torch.ones(len(mask), {n}, dtype=mask.dtype), mask], dim=1)  "
                         f"# pool_over = prompt-and-text: the {n} prompt positions count"]
        pool = getattr(getattr(base, "cfg", None), "pooling", "mean")
        pooled = "pooled = hidden[:, 0]" if pool == "cls" else \
            "pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)"
        return [f"Prompt tuning: PEFT's output has {n} soft-prompt positions before the text. The studio pools over "
                + ("the text only" if config.pool_over == "text" else "the prompt and the text")
                + f" (pool_over = {config.pool_over}), with {pool} pooling. Its logits from PEFT's outputs:",
                "",
                "```python",
                "hidden = peft_model(input_ids=ids, attention_mask=mask).last_hidden_state  # (batch, n + L, d)",
                "mask = mask.to(hidden.dtype)",
                *positions,
                pooled,
                "head = safetensors.torch.load_file('head.safetensors')",
                "logits = pooled @ head['weight'].T + head['bias']",
                "```"]


def prompt_settings(base: FrozenBase, tokens: int) -> dict[str, Any]:
    """PEFT's prompt-learning fields for an encoder or a decoder (one transformer stack either way)."""
    heads = getattr(base.cfg, "n_heads", None) or base.cfg.num_heads  # encoder / decoder config field
    return {"num_virtual_tokens": tokens, "token_dim": base.hidden_size, "num_transformer_submodules": 1,
            "num_attention_heads": heads, "num_layers": base.num_layers}


def check_positions(tokens: int, base: FrozenBase, what: str) -> None:
    """Refuse, at configuration time, n vectors that leave a text fewer than 2 positions ([CLS] and [SEP])."""
    if base.position_limit is not None and base.position_limit - tokens < 2:
        raise ConfigError(f"tokens: {tokens} {what} leave {base.position_limit - tokens} of the {base.position_limit} "
                          f"position embeddings of {base.name} for the text; use at most {base.position_limit - 2}")
