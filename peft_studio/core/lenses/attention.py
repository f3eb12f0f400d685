"""Attention lenses: where the real tokens look when a method adds positions in front of them.

A base's attention modules keep their softmax weights when asked (`keep_probs`), so the lens reads the weights the
model really used for the sentence, not a re-derivation. Prefix tuning: per layer and head, the share of
attention the real tokens give the n prefix keys (the seed's "4 -> 6 keys", with the weights drawn on the key row).
Prompt tuning: the same share for the n soft-prompt positions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from . import LensFigure, token_text


@contextmanager
def keeping_attention(base: nn.Module) -> Iterator[list[nn.Module]]:
    """Attention modules of the base in layer order, keeping their weights for the duration."""
    modules = [m for m in base.modules() if hasattr(m, "keep_probs")]
    for module in modules:
        module.keep_probs, module.probs = True, None
    try:
        yield modules
    finally:
        for module in modules:
            module.keep_probs, module.probs = False, None


def sentence_tokens(experiment, sentence: str) -> list[str]:
    """The sentence's tokens as the base reads them (the keys after any added positions)."""
    ids, mask = experiment.tokenizer.batch([sentence])
    kept = [int(i) for i, m in zip(ids[0].tolist(), mask[0].tolist(), strict=True) if m]
    return [token_text(experiment.tokenizer.decode, i) for i in kept]


@torch.no_grad()
def attention_weights(experiment, sentence: str) -> list[torch.Tensor]:
    """Each layer's attention weights for the sentence: [heads, queries, keys] (batch of one)."""
    ids, mask = experiment.tokenizer.batch([sentence])
    model = experiment.model
    was_training = model.training
    model.eval()
    try:
        with keeping_attention(experiment.base) as modules:
            model(ids, mask)
            return [m.probs[0] for m in modules if m.probs is not None]
    finally:
        model.train(was_training)


def front_share_figure(kind: str, title: str, weights: list[torch.Tensor], front: int, queries_from: int,
                       note: str, key_labels: list[str] | None = None,
                       layers: list[int] | None = None) -> LensFigure:
    """The share of attention that the real queries (from position `queries_from`) give the first `front` keys,
    as a [layers x heads] grid, plus each layer's mean weight on every key position (its key row; the first
    layer's also as a table of (key, weight) when `key_labels` names the keys). `layers`: the base's layer of
    each weight."""
    grid = [[float(w[h, queries_from:, :front].sum(-1).mean()) for h in range(w.shape[0])] for w in weights]
    flat = [x for row in grid for x in row]
    key_rows = [[float(x) for x in w[:, queries_from:, :].mean(dim=(0, 1))] for w in weights]
    key_row = key_rows[0] if key_rows else []
    named = key_labels is not None and len(key_labels) == len(key_row)
    table = list(zip(key_labels, key_row, strict=True)) if named else []
    return LensFigure(kind, title, "", {"mean_share": sum(flat) / len(flat) if flat else 0.0,
                                        "max_share": max(flat) if flat else 0.0, "front_keys": float(front)},
                      {"share_by_layer_head": grid, "key_row_weights": key_row, "key_rows": key_rows,
                       "layers": list(layers) if layers is not None else list(range(len(grid)))}, table, note=note,
                      columns=["key", "mean weight (first layer)"] if named else [])
