"""Trainable tokens: chosen rows of the token embedding table train, every other row stays frozen (PEFT's
TRAINABLE_TOKENS, peft/tuners/trainable_tokens).

Follows PEFT 0.21: the layer keeps the frozen table W0 and a trained k x d copy of the k chosen rows
(`trainable_tokens_delta`: PEFT's name, though it holds the rows' values, not a difference), starting at those rows'
own values (init_weights, so the model starts unchanged) or at N(0, 1). Each forward writes the rows into a copy of
W0 (`index_copy`, PEFT's get_merged_weights) and looks the tokens up in it; merging writes them into W0 itself.
Where the base ties its LM head to the table (GPT-2, tiny-decoder), the head reads the same trained rows, as PEFT
ties a second layer to the first: the k x d numbers are counted and trained once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..bases.frozen import FrozenBase
from ..bases.sites import TOKEN_ROWS, Site
from ..errors import AdapterFileError
from ..files.safe_io import expect_shape
from ..model.studio_model import StudioModel
from .config import MethodConfig, layer_ranges, option, parse_indices
from .mergeable import WeightUpdate
from .method import SELECTIVE, Method, MethodCard, code_line, require_kind
from .peft_format import KEY_PREFIX, hf_name, modules_of, split_module_keys, unknown

DELTA = "trainable_tokens_delta"  # PEFT's tensor name


class TokenRows(WeightUpdate):
    """A frozen token embedding table whose chosen rows are trained values."""

    site_kind = TOKEN_ROWS  # the census puts the rows on the table's token-rows site, not LoRA's embedding site

    def __init__(self, base_layer: nn.Embedding, indices: list[int], init_weights: bool) -> None:
        super().__init__(base_layer)
        # the table's sizes, read where a base describes its embedding (an Embedding's own attribute names)
        self.num_embeddings, self.embedding_dim = base_layer.num_embeddings, base_layer.embedding_dim
        self.token_indices = list(indices)
        weight = base_layer.weight
        start = weight.detach()[self.token_indices].clone() if init_weights else \
            torch.randn(len(self.token_indices), weight.shape[1], dtype=weight.dtype)
        self.trainable_tokens_delta = nn.Parameter(start)

    def weight_out_in(self) -> torch.Tensor:
        return self.base_layer.weight  # the table's own layout, [rows, width]

    def merged_weight(self) -> torch.Tensor:
        weight = self.weight_out_in()
        index = torch.tensor(self.token_indices, device=weight.device)
        return weight.index_copy(0, index, self.trainable_tokens_delta.to(weight.dtype))

    def delta_weight(self) -> torch.Tensor:
        return self.merged_weight() - self.original_weight()  # zero outside the chosen rows (for the ΔW lens)

    def adapted(self, x: torch.Tensor) -> torch.Tensor:
        base = self.base_layer
        return F.embedding(x, self.merged_weight(), base.padding_idx, base.max_norm, base.norm_type,
                           base.scale_grad_by_freq, base.sparse)


class TiedTokenRows(nn.Module):
    """An LM head tied to the token table: its output rows are the table's, the trained ones included."""

    def __init__(self, base_layer: nn.Linear, rows: TokenRows) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self._rows = [rows]  # not a submodule: the trained rows belong to the table (one tensor, counted once)

    @property
    def weight(self) -> torch.Tensor:
        return self.base_layer.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self._rows[0]
        if rows.merged:  # merged rows are in the shared tensor itself
            return self.base_layer(x)
        return F.linear(x, rows.merged_weight(), self.base_layer.bias)


@dataclass
class TrainableTokensConfig(MethodConfig):
    token_indices: str = option("0-7", "comma list of token ids (or ranges such as 5-9) whose embedding rows train; "
                                       "PEFT's token_indices, which has no default (its empty list trains nothing)")
    init_weights: bool = option(True, "start each row at its own embedding, so the model starts unchanged (PEFT's "
                                      "default); false: N(0, 1) rows")


class TrainableTokensMethod(Method):
    family_group = SELECTIVE
    name = "trainable-tokens"
    title = "Trainable Tokens"
    config_cls = TrainableTokensConfig
    site_kinds = (TOKEN_ROWS,)
    claims_kinds = (TOKEN_ROWS,)
    # small ids for the toy bases' vocabularies; on MiniLM 101, 102 are [CLS], [SEP] and 1996-2100 hold common words
    # ("the", "was", "it"), so the tests' texts read trained rows (values outside a base's vocabulary are not drawn)
    example_space = {**Method.example_space, "token_indices": ("0", "1,4", "2-5,9", "101,102", "1996-2100"),
                     "init_weights": (True, False)}
    # MiniLM's [CLS], [SEP], "great", "the", "food", "ok", [PAD]: unsorted, as PEFT keeps the order it is given
    peft_space = {"token_indices": ([101, 102], [2307, 1996, 2833], [7929, 0, 102])}
    peft_type = "TRAINABLE_TOKENS"
    exchange_tolerance = 1e-5  # the bar for outputs equal to PEFT's
    peft_config_fields = {"token_indices": ((list,), "a list of whole numbers"),
                          "init_weights": ((bool,), "true or false")}
    glyph = "T#"
    colour = "#7d6608"
    card = MethodCard(
        where="inside the token embedding table: only the rows of the chosen tokens train",
        intuition="teach the model what a few words (or new tokens) mean without touching anything else",
        advantages="k x d numbers for k tokens; the rest of the table and the whole model stay frozen; mergeable "
                   "(the rows are written into the table)",
        limitations="changes only what the chosen tokens look like on input (and, when tied, as outputs); texts "
                    "without them are unchanged",
        formula="E'[i] = T[i] for i in the chosen tokens, else E[i];  T: k x d",
    )

    def indices(self, config: TrainableTokensConfig, base: FrozenBase) -> list[int]:
        return parse_indices("token_indices", config.token_indices, self.site(base).in_features)

    def site(self, base: FrozenBase) -> Site:
        return require_kind(base, self.name, TOKEN_ROWS)[0]

    def selected_sites(self, config: TrainableTokensConfig, base: FrozenBase) -> list[Site]:
        return [self.site(base)]

    def validate(self, config: TrainableTokensConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        self.indices(config, base)

    def effective_options(self, config: TrainableTokensConfig, base: FrozenBase) -> dict[str, Any]:
        values = config.to_dict()
        values["token_indices"] = layer_ranges(self.indices(config, base))  # the form shows the ids in force
        return values

    def attach(self, model: StudioModel, config: TrainableTokensConfig) -> None:
        base = model.base
        site = self.site(base)
        table = base.get_submodule(site.module_path)
        rows = TokenRows(table, self.indices(config, base), config.init_weights)
        model.swap(site.module_path, rows)
        for path, module in list(base.named_modules()):  # a head tied to the table reads the same rows (as PEFT)
            if isinstance(module, nn.Linear) and module.weight is table.weight:
                model.swap(path, TiedTokenRows(module, rows))

    def parameter_count(self, config: TrainableTokensConfig, base: FrozenBase) -> int:
        return len(self.indices(config, base)) * self.site(base).out_features

    def formula_text(self, config: TrainableTokensConfig, base: FrozenBase) -> str:
        k, d = len(self.indices(config, base)), self.site(base).out_features
        return f"k x d = {k} x {d} = {k * d:,}"

    def live_formula(self, config: TrainableTokensConfig) -> str:
        return self.card.formula.replace("the chosen tokens", f"{{{config.token_indices}}}")

    def code(self, config: TrainableTokensConfig) -> str:
        return code_line(TokenRows.merged_weight, "index_copy")

    def shape_notes(self, config: TrainableTokensConfig, base: FrozenBase, seq_len: int) -> list[str]:
        site = self.site(base)
        k = len(self.indices(config, base))
        notes = [f"{k} of the {site.in_features:,} rows of the {site.in_features:,}x{site.out_features} token table "
                 f"train ({k / site.in_features:.2%}); shapes are unchanged"]
        table = base.get_submodule(site.module_path)
        table = getattr(table, "base_layer", table)  # attached or not
        if any(isinstance(m, nn.Linear) and m.weight is table.weight for m in base.modules()):
            notes.append("the LM head is tied to the table: its logits for these tokens use the trained rows too")
        return notes

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: TrainableTokensConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        modules = modules_of(base, TokenRows)
        if not modules:
            raise AdapterFileError("export to PEFT format: the model has no trainable token rows")
        path, rows = modules[0]
        name = hf_name(path, base)
        settings = {"token_indices": list(rows.token_indices), "target_modules": [name],
                    "init_weights": config.init_weights}
        return settings, {f"{KEY_PREFIX}{name}.{DELTA}": rows.trainable_tokens_delta}

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        indices = peft_config.get("token_indices")
        if not indices or not all(type(i) is int and i >= 0 for i in indices):
            raise AdapterFileError(f"{where}: token_indices must be a non-empty list of token ids (got "
                                   f"{str(indices)[:80]})")
        if len(set(indices)) != len(indices):
            raise AdapterFileError(f"{where}: token_indices names a token twice (PEFT would write one of two rows "
                                   "at random)")
        parts = split_module_keys(tensors, (DELTA,), where, "a trainable-tokens")
        if len(parts) != 1:
            raise AdapterFileError(f"{where}: a trainable-tokens adapter holds one table's rows; found "
                                   f"{', '.join(sorted(parts)) or 'none'}")
        (module, leaves), = parts.items()
        rows = leaves[DELTA]
        expect_shape(rows, 2, f"{where}: {module}.{DELTA}", AdapterFileError, "(tokens, width)")
        if rows.shape[0] != len(indices):
            raise unknown(where, f"{module}.{DELTA}", f"has {rows.shape[0]} rows for {len(indices)} token_indices")
        order = sorted(range(len(indices)), key=indices.__getitem__)  # the studio keeps the ids sorted
        options = {"token_indices": layer_ranges(indices), "init_weights": bool(peft_config.get("init_weights", True))}
        return options, {f"{module}.{DELTA}": rows[order]}

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        site = self.site(base)
        for path, _rows in modules_of(base, TokenRows):
            if path != site.module_path:
                raise AdapterFileError(f"{where}: the adapter's rows sit in {path}; the studio trains rows of the "
                                       f"token table {site.module_path} only")

    def peft_import_notes(self, peft_config: dict[str, Any], where: str) -> list[str]:
        indices = peft_config.get("token_indices") or []
        if list(indices) != sorted(indices):
            return [f"{where}: token_indices {indices[:12]} are kept in increasing order here (the same rows)"]
        return []
