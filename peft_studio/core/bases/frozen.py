"""The common face of every frozen base model."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from .sites import Block, Site, SiteIndex


class Tokenizer(Protocol):
    """What a base needs from a tokenizer: texts in, padded ids and mask out."""

    vocab_size: int

    def batch(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]: ...


def tensors_fingerprint(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """A short SHA-256 over names, shapes, dtypes and raw bytes: equal iff bit-identical."""
    digest = hashlib.sha256()
    for name, tensor in named:
        if tensor.is_meta:  # shapes without storage (a meta-device base): the header is all there is
            digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|meta|".encode())
            continue
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tuple(data.shape)}|{data.dtype}|".encode())
        if data.numel():  # hashed in place through the buffer protocol: no copy of the bytes
            digest.update(memoryview(data.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class TrainDefaults:
    """A base family's sensible training settings, shared by the window and the command line."""

    steps: int = 200
    lr: float = 1e-2
    batch_size: int = 0  # 0: full batch


class FrozenBase(nn.Module):
    """A frozen encoder: token ids + mask -> pooled vector, plus its description.

    The description is what a diagram, the CLI and the methods need and nothing else: blocks()
    (with structural flags for residual adds and norms), sites() (with module paths), the family's
    Hugging Face module names (hf_module), per-method default options, and training defaults."""

    name: str = "base"
    title: str = "Base"
    hidden_size: int
    num_layers: int = 0
    position_limit: int | None = None  # position embeddings, where the base has them (a soft prompt uses some)
    norm_placement: str = "none"  # "post" (BERT: add then norm), "pre" (norm then sublayer), or "none"
    default_method: str = "lora"
    unusable: str | None = None  # why the weights cannot be run (a checkpoint with NaN), shown and refused
    default_dataset: str = "intents"  # the built-in dataset a run uses when none is named
    train_defaults: TrainDefaults = TrainDefaults()
    # method name -> default options on this family, e.g. {"lora": {"targets": "q,v"}}
    method_option_defaults: Mapping[str, Mapping[str, Any]] = {}
    # base options a setup may give (checked before building): whole numbers with their ranges,
    # text options with their choices, and those that may be null (their default then)
    option_ranges: Mapping[str, tuple[int, int]] = {}
    option_choices: Mapping[str, tuple[str, ...]] = {}
    nullable_options: frozenset[str] = frozenset()
    input_embedding_path: str = ""  # the token embedding table's module path (a soft prompt's nearest words)

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> str | None:
        """A problem across checked options (e.g. heads not dividing the width), or None."""
        return None

    @classmethod
    def max_positions(cls, options: Mapping[str, Any]) -> int | None:
        """Positions the base embeds with these options (None: it truncates its own inputs)."""
        return None
    on_meta_device: bool = False  # shapes only (no weights): inspect, never train or predict
    head_bias: bool = True  # the classification head's bias (a decoder's `score` has none, as in transformers)

    def __init__(self, tokenizer: Tokenizer) -> None:
        super().__init__()
        self.tokenizer = tokenizer

    def freeze(self) -> None:
        for parameter in self.parameters():
            parameter.requires_grad_(False)

    def sites(self) -> list[Site]:
        """The declaration (built anew on each call): read sites through site_index(), which keeps them."""
        raise NotImplementedError

    def site_index(self) -> SiteIndex:
        """Every site, declared once per base and indexed by id, target name and module path (a base's
        structure is fixed when it is built, so its sites never change)."""
        index = self.__dict__.get("_site_index")
        if index is None:
            index = SiteIndex(self.sites(), self.hf_module)
            self.__dict__["_site_index"] = index  # a plain attribute: nn.Module's registry is for tensors
        return index

    def blocks(self) -> list[Block]:
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Hash of every tensor of the base as it is now."""
        return tensors_fingerprint(self.state_dict().items())

    def site(self, site_id: str) -> Site:
        return self.site_index().by_id[site_id]

    def input_embeddings(self) -> nn.Embedding | None:
        """The table token ids are looked up in, or None for a base without one."""
        return self.get_submodule(self.input_embedding_path) if self.input_embedding_path else None

    def hf_module(self, module_path: str) -> str | None:
        """The Hugging Face module name of one of this base's modules, or None (family-specific)."""
        return None

    def target_presets(self) -> Mapping[str, tuple[str, ...]]:
        """Names that stand for groups of targets on this family (e.g. "attention", "all-linear")."""
        return {}

    def method_defaults(self) -> Mapping[str, Mapping[str, Any]]:
        return self.method_option_defaults

    def describe(self) -> str:
        return self.title
