"""Weight-update lenses: ΔW = W' - W0 of every weight-update layer (LoRA, DoRA, LoHa, OFT, ...), read through the
merge contract (methods/mergeable.py), so a new method of that kind gets its lens without code of its own.

Per site: the singular values of ΔW (is it really low rank? against r where the method has one), its effective
rank (Roy & Vetterli 2007: exp of the entropy of the normalised singular values), ‖ΔW‖_F / ‖W0‖_F, a
downsampled heatmap of ΔW, and the intruder dimensions of Shuttleworth et al. (2024, "LoRA vs full fine-tuning:
an illusion of equivalence"): among the top singular vectors of W0 + ΔW, those whose best cosine similarity with
any singular vector of W0 is below a threshold, i.e. new directions the fine-tune put into the weight. A layer
that exposes `rotation()` (orthogonal methods) also shows its rotation's angle spectrum.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..methods.mergeable import WeightUpdate, weight_updates
from . import LensFigure

HEATMAP_CELLS = 48  # at most 48 x 48 cells: a projector shows the pattern, not 4096 x 4096 numbers
SPECTRUM_VALUES = 64  # singular values listed (the rest are summarised by the numbers)
INTRUDER_TOP_K = 10  # top singular vectors of W0 + ΔW examined (the paper's k)
INTRUDER_THRESHOLD = 0.5  # best |cos| with W0's singular vectors below this: an intruder dimension


def effective_rank(singular_values: torch.Tensor) -> float:
    """exp(H(p)) with p = σ / Σσ (Roy & Vetterli, 2007); 0 for a zero matrix."""
    total = float(singular_values.sum())
    if total <= 0.0:
        return 0.0
    p = singular_values / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def downsample(matrix: torch.Tensor, cells: int = HEATMAP_CELLS) -> torch.Tensor:
    """Block means of a 2-D tensor to at most cells x cells (signs kept)."""
    rows, cols = min(cells, matrix.shape[0]), min(cells, matrix.shape[1])
    return F.adaptive_avg_pool2d(matrix[None, None], (rows, cols))[0, 0]


def intruder_dimensions(w0: torch.Tensor, adapted: torch.Tensor, top_k: int = INTRUDER_TOP_K,
                        threshold: float = INTRUDER_THRESHOLD) -> tuple[int, list[float]]:
    """(how many of the top_k left singular vectors of `adapted` are intruders, their best |cos| with W0's)."""
    u0, _, _ = torch.linalg.svd(w0, full_matrices=False)
    u1, _, _ = torch.linalg.svd(adapted, full_matrices=False)
    best = (u1[:, :top_k].T @ u0).abs().max(dim=1).values
    return int((best < threshold).sum()), [float(x) for x in best]


@torch.no_grad()
def delta_w_figure(site: str, layer: WeightUpdate) -> LensFigure:
    """ΔW of one weight-update layer: spectrum, effective rank, relative size, heatmap and intruders."""
    w0 = layer.original_weight().detach().float()
    adapted = layer.merged_weight().detach().float() if not layer.merged else layer.weight_out_in().detach().float()
    figure = delta_figure(site, w0, adapted, getattr(layer, "r", None))
    magnitude = getattr(layer, "lora_magnitude_vector", None)
    if isinstance(magnitude, nn.Parameter):  # DoRA: the learned length of each row against W0's
        row_norms = torch.linalg.norm(w0, dim=1)
        figure.arrays["magnitude"] = [float(x) for x in magnitude.detach().float()]
        figure.arrays["w0_row_norm"] = [float(x) for x in row_norms]
        figure.numbers["magnitude_change"] = float((magnitude.detach().float() - row_norms).abs().mean()
                                                   / row_norms.abs().mean().clamp(min=1e-12))
    return figure


@torch.no_grad()
def delta_figure(site: str, w0: torch.Tensor, adapted: torch.Tensor, rank: int | None = None) -> LensFigure:
    """ΔW = adapted - W0 ([out, in]): spectrum, effective rank, relative size, heatmap and intruders."""
    w0, adapted = w0.float(), adapted.float()
    delta = adapted - w0
    singular = torch.linalg.svdvals(delta)
    w0_norm = float(torch.linalg.matrix_norm(w0))
    numbers = {"effective_rank": effective_rank(singular),
               "numerical_rank": float(int((singular > singular[0] * 1e-5).sum())) if singular[0] > 0 else 0.0,
               "relative_norm": float(torch.linalg.matrix_norm(delta)) / w0_norm if w0_norm else math.inf,
               "max_singular_value": float(singular[0]) if len(singular) else 0.0}
    if isinstance(rank, int):
        numbers["r"] = float(rank)
    intruders, best = intruder_dimensions(w0, adapted)
    numbers["intruder_dimensions"] = float(intruders)
    return LensFigure("delta-w", f"ΔW at {site}", site, numbers,
                      {"singular_values": [float(x) for x in singular[:SPECTRUM_VALUES]],
                       "heatmap": downsample(delta).tolist(), "intruder_best_cos": best},
                      note=f"intruders: of the top {INTRUDER_TOP_K} singular vectors of W0 + ΔW, those with "
                           f"|cos| < {INTRUDER_THRESHOLD} to every singular vector of W0")


@torch.no_grad()
def rotation_figure(site: str, rotation: torch.Tensor) -> LensFigure:
    """The angles (degrees) of an orthogonal matrix's eigenvalues e^{±iθ}, largest first (a block-diagonal R may be
    given as a stack of blocks [n, b, b])."""
    blocks = rotation.detach().double()
    blocks = blocks if blocks.dim() == 3 else blocks[None]
    angles = torch.cat([torch.linalg.eigvals(block).angle().abs() for block in blocks]) * (180.0 / math.pi)
    angles = angles.sort(descending=True).values
    return LensFigure("rotation", f"rotation at {site}", site,
                      {"max_angle_deg": float(angles[0]) if len(angles) else 0.0,
                       "mean_angle_deg": float(angles.mean()) if len(angles) else 0.0},
                      {"angles_deg": [float(x) for x in angles[:SPECTRUM_VALUES * 4]]})


def weight_update_figures(model: nn.Module, site_of: dict[str, str] | None = None,
                          only: set[str] | None = None) -> list[LensFigure]:
    """One ΔW figure per weight-update layer (and a rotation figure where the layer exposes one); `only` limits
    them to those site ids (a live lens looks at one site)."""
    figures = []
    for path, layer in weight_updates(model):
        site = (site_of or {}).get(path, path)
        on_meta = any(t.is_meta for t in (*layer.base_layer.parameters(), *layer.base_layer.buffers()))
        if on_meta or (only is not None and site not in only):
            continue  # shapes only: nothing trained to look at
        figures.append(delta_w_figure(site, layer))
        rotation = getattr(layer, "rotation", None)
        if callable(rotation):
            figures.append(rotation_figure(site, rotation()))
    return figures
