"""LoRA's layers: the low-rank update beside a frozen Linear or Embedding, initialised as PEFT's init_lora_weights.

Follows peft/tuners/lora/layer.py (0.21): `Linear.update_layer` / `reset_lora_parameters` and `Embedding`.
The scale is alpha / r, or alpha / sqrt(r) with use_rslora. Initialisations:

    true      A Kaiming-uniform (a = sqrt 5), B zeros: the update starts at 0
    gaussian  A ~ N(0, 1/r), B zeros
    false     A and B both Kaiming-uniform, as an nn.Linear: the model does not start at W0 (PEFT: for debugging)
    pissa     B0 A0 = the top r singular triplets of W0: B0 = V_r sqrt(S_r / s), A0 = sqrt(S_r / s) U_r^T
    olora     B0 A0 from the QR of W0: B0 = Q[:, :r], A0 = R[:r]

PiSSA and OLoRA also change the base: PEFT replaces W0 by the residual W0 - s B0 A0 (and re-derives it from
the base whenever it loads such an adapter). The studio leaves W0 untouched and keeps B0 A0 as frozen method
tensors (`init_A`, `init_B`) whose product it subtracts, which computes the same function; so the base stays
bit-identical, detaching restores nothing, and several adapters can share one base (PEFT warns against that
with its in-place residual). On an Embedding, PEFT's inits other than false all give A zeros, B ~ N(0, 1)
(no residual variant exists there), and no dropout is applied.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from .mergeable import WeightUpdate

INITS = ("true", "false", "gaussian", "pissa", "olora")
RESIDUAL_INITS = ("pissa", "olora")  # PEFT moves B0 A0 out of the base weight


def lora_scaling(r: int, alpha: float, use_rslora: bool) -> float:
    """alpha / r, or rsLoRA's alpha / sqrt(r) (Kalajdzievski, 2023; PEFT's use_rslora)."""
    return alpha / math.sqrt(r) if use_rslora else alpha / r


def residual_factors(weight: torch.Tensor, r: int, scaling: float, init: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(A0 [r, in], B0 [out, r]) of PiSSA or OLoRA from W0 [out, in], in fp32, exactly as PEFT computes them."""
    weight = weight.detach().to(torch.float32)
    if r > min(weight.shape):
        raise ConfigError(f"init_lora_weights {init!r}: r = {r} is larger than the weight's smaller side "
                          f"{min(weight.shape)} ({tuple(weight.shape)}), so there are not r components to take")
    if init == "pissa":  # peft LoraLayer.pissa_init
        v, s, uh = torch.linalg.svd(weight, full_matrices=False)
        sr = s[:r] / scaling
        return torch.diag(torch.sqrt(sr)) @ uh[:r], v[:, :r] @ torch.diag(torch.sqrt(sr))
    q, rr = torch.linalg.qr(weight)  # peft LoraLayer.olora_init
    return rr[:r].contiguous(), q[:, :r].contiguous()


def _rows(t: torch.Tensor) -> torch.Tensor:
    """[..., width] -> [rows, width] (a view where the layout allows), the 2-D operand torch.addmm takes."""
    return t.reshape(-1, t.shape[-1])


class LoraLinear(WeightUpdate):
    """A frozen Linear plus a trainable low-rank update; `merge` folds the update into W0."""

    def __init__(self, base_layer: nn.Module, r: int, alpha: float, dropout: float, use_rslora: bool = False,
                 init: str = "true") -> None:
        super().__init__(base_layer)
        if init not in INITS:
            raise ConfigError(f"init_lora_weights must be one of {', '.join(INITS)} (got {init!r})")
        self.r, self.alpha, self.init = r, alpha, init
        self.scaling = lora_scaling(r, alpha, use_rslora)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_A = nn.Parameter(torch.empty(r, base_layer.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base_layer.out_features, r))
        self.residual = init in RESIDUAL_INITS
        if self.residual:
            self._init_residual(init)
        else:
            self._init_plain(init)

    def _init_plain(self, init: str) -> None:
        if init == "gaussian":
            nn.init.normal_(self.lora_A, std=1 / self.r)
        else:
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as PEFT: A random, B zero -> starts at W0
        if init == "false":  # PEFT leaves nn.Linear's own init on B too
            nn.init.kaiming_uniform_(self.lora_B, a=math.sqrt(5))

    def _init_residual(self, init: str) -> None:
        weight = self.weight_out_in()
        if weight.is_meta:  # shapes only: nothing to decompose
            a0, b0 = torch.empty_like(self.lora_A), torch.empty_like(self.lora_B)
        else:
            a0, b0 = residual_factors(weight, self.r, self.scaling, init)
        with torch.no_grad():
            self.lora_A.copy_(a0)
            self.lora_B.copy_(b0)
        self.init_A = nn.Parameter(a0.clone(), requires_grad=False)  # frozen: W0 - s B0 A0 is the residual base
        self.init_B = nn.Parameter(b0.clone(), requires_grad=False)

    def delta_weight(self) -> torch.Tensor:
        delta = self.lora_B @ self.lora_A
        if self.residual:
            delta = delta - self.init_B @ self.init_A
        return delta * self.scaling

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        if self.residual:  # PEFT's residual base (W0 - s B0 A0) x, without touching W0
            result = result - (x @ self.init_A.T @ self.init_B.T) * self.scaling
        if result.dtype != self.lora_B.dtype:  # a frozen layer computing in another dtype: torch promotes
            return result + (self.lora_dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scaling
        # result + scaling (x A^T) B^T as one addmm (alpha = scaling), not a matmul, a multiply and an add
        out = torch.addmm(_rows(result), _rows(self.lora_dropout(x)) @ self.lora_A.T, self.lora_B.T, alpha=self.scaling)
        return out.view(result.shape)


class LoraEmbedding(WeightUpdate):
    """A frozen Embedding plus a low-rank update of its table: PEFT's lora.Embedding (A [r, rows], B [width, r])."""

    def __init__(self, base_layer: nn.Embedding, r: int, alpha: float, use_rslora: bool = False,
                 init: str = "true") -> None:
        super().__init__(base_layer)
        self.r, self.alpha, self.init = r, alpha, init
        self.scaling = lora_scaling(r, alpha, use_rslora)
        self.residual = False
        rows, width = base_layer.num_embeddings, base_layer.embedding_dim
        self.lora_embedding_A = nn.Parameter(torch.randn(r, rows))
        self.lora_embedding_B = nn.Parameter(torch.randn(width, r))
        if init != "false":  # every other init: A zeros, B ~ N(0, 1) (peft reset_lora_parameters)
            with torch.no_grad():
                self.lora_embedding_A.zero_()
                self.lora_embedding_B.normal_()

    def delta_weight(self) -> torch.Tensor:
        """[rows, width], the table's layout."""
        return (self.lora_embedding_B @ self.lora_embedding_A).T * self.scaling

    def weight_out_in(self) -> torch.Tensor:
        return self.base_layer.weight

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        base = self.base_layer
        after_a = F.embedding(x, self.lora_embedding_A.T, base.padding_idx, base.max_norm, base.norm_type,
                              base.scale_grad_by_freq, base.sparse)
        return result + (after_a @ self.lora_embedding_B.T) * self.scaling
