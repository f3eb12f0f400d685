"""Each training batch without the padding columns none of its texts uses.

A dataset is tokenized once, padded to its longest text; a mini-batch of shorter texts would spend every
matrix multiply on columns that are padding in every row (on MiniLM + sentiment, 13 columns where a batch of
16 needs 11 on average). Cutting the trailing all-padding columns gives every text the same output, since the
bases mask padded keys and pool over real tokens only; the arithmetic differs only in the order float32 sums
what the mask zeroes, so outputs may move in the last bit (tests/core/test_padding.py checks every method on the
encoder and the decoder). A method whose outputs read the padding itself (Lily's router averages over every
position of the batch, as PEFT's does) declares `reads_padding` and keeps its batches as they are.
"""

from __future__ import annotations

import torch


def trim_trailing_padding(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) without the trailing columns where every row is padding (views, no copy); at least one column
    stays. Leading padding (a left-padded decoder batch) is kept: cutting it would shift positions."""
    if mask.shape[1] <= 1 or bool(mask[:, -1].any()):
        return ids, mask
    used = mask.any(dim=0).nonzero()
    length = int(used[-1]) + 1 if len(used) else 1
    return ids[:, :length], mask[:, :length]
