"""NF4 4-bit storage of frozen Linear weights through bitsandbytes (block size 64, quant type nf4)."""

from __future__ import annotations

import contextlib
import functools
import io
import logging
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

BLOCK_SIZE = 64
QUANT_TYPE = "nf4"  # bitsandbytes defaults to fp4; QLoRA uses NormalFloat4


@functools.cache
def _bnb_functional():
    """Import bitsandbytes once and quietly: on CPU it logs about an optional kernel package."""
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        import bitsandbytes.functional as bnb_functional
    return bnb_functional


@dataclass(frozen=True)
class QuantError:
    max_abs: float
    mean_abs: float
    relative_rms: float  # ||W - deq(W)|| / ||W||


class NF4Linear(nn.Module):
    """A frozen Linear whose weight lives as packed NF4 codes + per-block absmax scales.

    A GPT-2 Conv1D (weight stored [in, out]) is quantized as transformers' bitsandbytes loader does it: the weight
    transposed to [out, in] first, then quantized as any Linear4bit weight."""

    def __init__(self, linear: nn.Module) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.bias = linear.bias  # the original frozen Parameter, untouched
        if linear.weight.is_meta:  # shapes only: bitsandbytes' storage layout, no codes (nothing to quantize)
            numel = linear.weight.numel()
            self.register_buffer("weight_nf4", torch.empty((numel + 1) // 2, 1, dtype=torch.uint8, device="meta"))
            self.register_buffer("weight_absmax", torch.empty(-(-numel // BLOCK_SIZE), device="meta"))
            self.quant_state = None
            self.error = QuantError(float("nan"), float("nan"), float("nan"))
            return
        bnb = _bnb_functional()
        weight = linear.weight.detach().float()
        if not isinstance(linear, nn.Linear) and tuple(weight.shape) == (self.in_features, self.out_features):
            weight = weight.T  # Conv1D: transformers transposes it before quantizing (Bnb4BitHfQuantizer)
        weight = weight.contiguous()
        packed, state = bnb.quantize_4bit(weight, blocksize=BLOCK_SIZE, quant_type=QUANT_TYPE)
        self.register_buffer("weight_nf4", packed)
        self.register_buffer("weight_absmax", state.absmax)
        self.quant_state = state
        restored = self.dequantized_weight()
        diff = (restored - weight).abs()
        relative = torch.linalg.norm(restored - weight) / torch.linalg.norm(weight).clamp(min=1e-12)
        self.error = QuantError(float(diff.max()), float(diff.mean()), float(relative))

    def dequantized_weight(self) -> torch.Tensor:
        self.quant_state.absmax = self.weight_absmax
        return _bnb_functional().dequantize_4bit(self.weight_nf4, self.quant_state)

    @property
    def stored_bytes(self) -> int:
        """Packed 4-bit codes plus the fp32 block scales."""
        return self.weight_nf4.numel() * self.weight_nf4.element_size() + \
            self.weight_absmax.numel() * self.weight_absmax.element_size()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = DequantizedMatmul.apply(x, self)
        return out if self.bias is None else out + self.bias


class DequantizedMatmul(torch.autograd.Function):
    """x W^T with W dequantized for the product and again for the backward, as bitsandbytes' MatMul4Bit: autograd
    keeps the 4-bit codes (a buffer), never the dequantized [out, in] weight."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, module: NF4Linear) -> torch.Tensor:  # noqa: ANN001 - autograd's ctx
        ctx.module = module
        return F.linear(x, module.dequantized_weight())

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN001
        return grad @ ctx.module.dequantized_weight().to(grad.dtype), None

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, nf4 block {BLOCK_SIZE}"
