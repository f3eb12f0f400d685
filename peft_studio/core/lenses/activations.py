"""Lenses that read the model running on one sentence, or the values of small trained vectors.

- A bottleneck adapter: each bottleneck unit's mean |activation| on the sentence, and how big the adapter's
  branch is against the main path it is added to (‖up(act(down(h)))‖ / ‖h‖).
- IA3: each gain vector's histogram (1.0 is "unchanged"; < 1 damps a channel, > 1 amplifies it, < 0 flips it).
- Prompt tuning: each soft token's nearest words in the base's own vocabulary (cosine similarity, top 5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from . import LensFigure, token_text

NEAREST = 5
GAIN_BINS = 24


@torch.no_grad()
def bottleneck_figures(model: nn.Module, run: Callable[[], object], is_adapter: Callable[[nn.Module], bool],
                       site_of: dict[str, str]) -> list[LensFigure]:
    """Run the model once (`run`) with hooks on every adapter (down, act, up), then one figure per adapter."""
    records: dict[str, dict[str, torch.Tensor]] = {}
    handles = []
    for path, module in model.named_modules():
        if not is_adapter(module):
            continue
        record = records.setdefault(path, {})
        handles.append(module.act.register_forward_hook(
            lambda _m, _i, out, record=record: record.__setitem__("bottleneck", out.detach())))
        handles.append(module.adapter_down.register_forward_hook(
            lambda _m, inputs, _o, record=record: record.__setitem__("input", inputs[0].detach())))
        handles.append(module.adapter_up.register_forward_hook(
            lambda _m, _i, out, record=record: record.__setitem__("branch", out.detach())))
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    figures = []
    for path, record in records.items():
        if "bottleneck" not in record:
            continue
        units = record["bottleneck"].float().abs().flatten(0, -2).mean(0)
        main = float(record["input"].float().norm())
        ratio = float(record["branch"].float().norm()) / main if main else 0.0
        site = site_of.get(path, path)
        figures.append(LensFigure("bottleneck", f"adapter bottleneck at {site}", site,
                                  {"branch_to_main": ratio, "active_units": float(int((units > 1e-3).sum())),
                                   "width": float(units.numel())},
                                  {"mean_abs_activation": [float(x) for x in units]}))
    return figures


@torch.no_grad()
def gain_figures(vectors: Sequence[tuple[str, torch.Tensor]], bins: int = GAIN_BINS) -> list[LensFigure]:
    """One histogram per IA3 gain vector, over a range that always shows 1.0 (the identity)."""
    figures = []
    for site, vector in vectors:
        values = vector.detach().float().flatten()
        low, high = min(float(values.min()), 0.0), max(float(values.max()), 2.0)
        counts = torch.histc(values, bins=bins, min=low, max=high)
        edges = torch.linspace(low, high, bins + 1)
        figures.append(LensFigure("gains", f"IA3 gains at {site}", site,
                                  {"mean": float(values.mean()), "min": float(values.min()),
                                   "max": float(values.max()), "damped": float(int((values < 1).sum())),
                                   "amplified": float(int((values > 1).sum())),
                                   "flipped": float(int((values < 0).sum()))},
                                  {"counts": [int(x) for x in counts], "edges": [float(x) for x in edges]}))
    return figures


@torch.no_grad()
def nearest_words(vectors: torch.Tensor, table: torch.Tensor, decode: Callable[[list[int]], list[str]],
                  k: int = NEAREST, skip: Sequence[int] = ()) -> list[list[tuple[str, float]]]:
    """For each vector, the k vocabulary entries of `table` with the highest cosine similarity."""
    table = nn.functional.normalize(table.detach().float(), dim=1)
    queries = nn.functional.normalize(vectors.detach().float(), dim=1)
    scores = queries @ table.T
    if skip:
        scores[:, list(skip)] = -2.0  # below any cosine
    best = scores.topk(min(k, table.shape[0]), dim=1)
    rows = []
    for values, ids in zip(best.values.tolist(), best.indices.tolist(), strict=True):
        rows.append([(token_text(decode, i), round(v, 4)) for i, v in zip(ids, values, strict=True)])
    return rows


def soft_token_figure(prompt: torch.Tensor, table: torch.Tensor, decode: Callable[[list[int]], list[str]],
                      skip: Sequence[int] = ()) -> LensFigure:
    """Each soft token's nearest words: readable words near a vector tell what the prompt drifted towards."""
    rows = nearest_words(prompt, table, decode, skip=skip)
    table_rows = [(f"soft {i + 1}", *(f"{word} ({cos:.2f})" for word, cos in row)) for i, row in enumerate(rows)]
    best = [row[0][1] for row in rows]
    return LensFigure("nearest-words", "soft tokens' nearest words", "prompt",
                      {"mean_best_cosine": sum(best) / len(best) if best else 0.0},
                      {"best_cosine": best}, table_rows,
                      note="cosine similarity with the base's own token embeddings; a soft token need not be "
                           "near any word",
                      columns=["soft token", *(f"nearest {i + 1}" for i in range(len(rows[0]) if rows else 0))])
