"""PEFT's BOFT CUDA extension in plain torch, for the tests (conftest installs it wherever peft is loaded)."""

from __future__ import annotations

import sys

import torch


class TorchFastBlockDiag:
    """PEFT's BOFT CUDA extension (peft/tuners/boft/fbd/fbd_cuda_kernel.cu) in plain torch: a batch [z, N, b, b]
    of blocks -> [z, N b, N b] block-diagonal matrices, and the gradient back. PEFT builds BOFT's butterfly factors
    (boft_n_butterfly_factor > 1) only with that extension, so the tests give it this one: BOFT is compared as
    PEFT computes it on a GPU machine, not as its CPU fallback (which silently drops to one factor)."""

    @staticmethod
    def forward(blocks):
        return [torch.stack([torch.block_diag(*batch) for batch in blocks])]

    @staticmethod
    def backward(grad_output, blocks):
        size = blocks.shape[-1]
        return [torch.stack([torch.stack([grad[n * size:(n + 1) * size, n * size:(n + 1) * size]
                                          for n in range(blocks.shape[1])]) for grad in grad_output])]


def install_fast_block_diag() -> None:
    """Give a loaded PEFT's BOFT the extension above (a no-op until peft is imported)."""
    layer = sys.modules.get("peft.tuners.boft.layer")
    if layer is not None and layer._FBD_CUDA is None:
        layer._FBD_CUDA = TorchFastBlockDiag
