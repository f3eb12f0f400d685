"""A frozen base + one method's trainable parts + a classification head."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..bases.frozen import FrozenBase, tensors_fingerprint
from .next_token import next_token_logits


class StudioModel(nn.Module):
    """Holds the base, records every module a method swaps in, and undoes it on detach."""

    def __init__(self, base: FrozenBase, base_fingerprint: str | None = None) -> None:
        """`base_fingerprint`: the bare base's fingerprint when already known (a reused base: detach restored
        it exactly); else it is computed."""
        super().__init__()
        self.base = base
        self.extras = nn.ModuleDict()  # method modules shared across sites (e.g. a prefix MLP)
        self.head: nn.Linear | None = None
        self.next_token = False  # True: no head; logits [B, L, V] from the base's own (frozen) LM head
        self._swapped: list[tuple[str, nn.Module]] = []  # (path in base, original module)
        self._unfrozen: dict[str, torch.Tensor] = {}  # base tensors a baseline made trainable -> originals
        self.base_fingerprint = base_fingerprint or base.fingerprint()
        self._base_param_ids = {id(p) for p in base.parameters()}

    # ---- attaching -------------------------------------------------------------------------
    def swap(self, path: str, module: nn.Module) -> nn.Module:
        """Put `module` at `path` inside the base; returns what was there."""
        original = self.base.get_submodule(path)
        self.base.set_submodule(path, module)
        self._swapped.append((path, original))
        return original

    def unfreeze_base(self, name: str) -> None:
        """Make one base tensor trainable (bitfit, full); its value is restored on detach."""
        parameter = self.base.get_parameter(name)
        self._unfrozen.setdefault(name, parameter.detach().clone())
        parameter.requires_grad_(True)

    def unfrozen_originals(self) -> dict[str, torch.Tensor]:
        """Base tensors a baseline made trainable -> their values before training (read-only copies)."""
        return dict(self._unfrozen)

    def add_head(self, num_labels: int, trainable: bool = True) -> None:
        self.head = nn.Linear(self.base.hidden_size, num_labels, bias=getattr(self.base, "head_bias", True))
        self.head.requires_grad_(trainable)

    def detach_method(self) -> None:
        """Restore the base exactly as it was before attach (bit-identical), merged weights included."""
        for path, original in reversed(self._swapped):
            for module in self.base.get_submodule(path).modules():
                if callable(getattr(module, "unmerge", None)):  # a merged update lives in the base's own weight
                    module.unmerge()
            self.base.set_submodule(path, original)
        self._swapped.clear()
        with torch.no_grad():
            for name, value in self._unfrozen.items():
                parameter = self.base.get_parameter(name)
                parameter.copy_(value)
                parameter.requires_grad_(False)
        self._unfrozen.clear()
        self.extras = nn.ModuleDict()

    @contextmanager
    def bypassed(self) -> Iterator[None]:
        """The bare base for the duration (PEFT's `disable_adapter`): the original modules back in their places
        and unfrozen tensors at their original values; the method's parts are put back afterwards, untouched.
        A merged update lives in W0 itself, so a merged model is refused."""
        current = [(path, self.base.get_submodule(path)) for path, _ in self._swapped]
        if any(getattr(part, "merged", False) for _, module in current for part in module.modules()):
            raise RuntimeError("unmerge before bypassing the method")
        trained = {name: self.base.get_parameter(name).detach().clone() for name in self._unfrozen}
        try:
            for path, original in reversed(self._swapped):
                self.base.set_submodule(path, original)
            with torch.no_grad():
                for name, value in self._unfrozen.items():
                    self.base.get_parameter(name).copy_(value)
            yield
        finally:
            for path, module in current:
                self.base.set_submodule(path, module)
            with torch.no_grad():
                for name, value in trained.items():
                    self.base.get_parameter(name).copy_(value)

    # ---- running ---------------------------------------------------------------------------
    def forward(self, token_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.next_token:
            return next_token_logits(self.base, token_ids, mask)
        assert self.head is not None, "add_head() before running the model"
        return self.head(self.base(token_ids, mask))

    # ---- inspecting ------------------------------------------------------------------------
    def owner_of(self, parameter: torch.Tensor) -> str:
        if self.head is not None and any(parameter is p for p in self.head.parameters()):
            return "head"
        return "base" if id(parameter) in self._base_param_ids else "method"

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def frozen_fingerprint(self) -> str:
        """Hash of every frozen tensor as it is now (quantized buffers included)."""
        frozen = [(n, p) for n, p in self.named_parameters() if not p.requires_grad]
        return tensors_fingerprint(frozen + list(self.named_buffers()))
