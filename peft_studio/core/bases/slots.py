"""Parameter-free pass-through modules at the places methods plug in.

A base puts one slot at every non-Linear site; a method attaches by swapping the slot for its
own module and detaches by swapping it back, so the frozen base code never changes.
"""

from __future__ import annotations

import torch
from torch import nn


class PromptSlot(nn.Module):
    """Before the position embeddings: (token embeddings, mask) -> possibly longer sequence."""

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return embeds, mask


class KVPrefixSlot(nn.Module):
    """Inside attention: (keys, values, key mask) -> possibly more keys/values."""

    def forward(
        self, keys: torch.Tensor, values: torch.Tensor, key_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return keys, values, key_mask


class GatedPromptSlot(nn.Module):
    """At the end of a decoder's attention: (its rotated queries, its output, the attention module) -> the output
    plus what a gated prompt adds (LLaMA-Adapter's adaption prompt); empty, it passes the output through."""

    def forward(self, queries: torch.Tensor, output: torch.Tensor, attention: nn.Module) -> torch.Tensor:
        return output


class AdapterSlot(nn.Module):
    """On a sublayer's output, before the residual add. A post-LN layer also hands over the residual and
    its LayerNorm, which an adapter in the Pfeiffer style reads (methods/adapter.py); empty, it passes through."""

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor | None = None,
                norm: nn.Module | None = None) -> torch.Tensor:
        return hidden


class ActivationSlot(nn.Identity):
    """On a hidden activation, where a per-channel scale can be applied."""
