"""The common face of every frozen base model."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Protocol

import torch
from torch import nn

from .sites import Block, Site


class Tokenizer(Protocol):
    """What a base needs from a tokenizer: texts in, padded ids and mask out."""

    vocab_size: int

    def batch(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]: ...


def tensors_fingerprint(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """A short SHA-256 over names, shapes, dtypes and raw bytes: equal iff bit-identical."""
    digest = hashlib.sha256()
    for name, tensor in named:
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tuple(data.shape)}|{data.dtype}|".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()[:16]


class FrozenBase(nn.Module):
    """A frozen encoder: token ids + mask -> pooled vector, plus its site catalogue."""

    name: str = "base"
    title: str = "Base"
    hidden_size: int
    num_layers: int = 0

    def __init__(self, tokenizer: Tokenizer) -> None:
        super().__init__()
        self.tokenizer = tokenizer

    def freeze(self) -> None:
        for parameter in self.parameters():
            parameter.requires_grad_(False)

    def sites(self) -> list[Site]:
        raise NotImplementedError

    def blocks(self) -> list[Block]:
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Hash of every tensor of the base as it is now."""
        return tensors_fingerprint(self.state_dict().items())

    def site(self, site_id: str) -> Site:
        for site in self.sites():
            if site.id == site_id:
                return site
        raise KeyError(site_id)

    def linear_names(self) -> list[str]:
        """Short names of the Linear sites, in declaration order, without repeats."""
        names: list[str] = []
        for site in self.sites():
            if site.kind == "linear" and site.name not in names:
                names.append(site.name)
        return names

    def describe(self) -> str:
        return self.title
