"""AdaMSS: trainable low-rank updates inside subspaces of W0's singular vectors, clustered per Linear (Adaptive
Multi-Subspaces).

Follows PEFT's AdaMSS (peft/tuners/adamss): per Linear, [W0 | b0] (the bias as an extra column) is decomposed by a
randomized SVD seeded with `random_seed`, [W0 | b0] ≈ U S V^T with R = min(r, out, in + 1) triplets; the rows of U
(one per output) are clustered into K subspaces by scikit-learn's k-means (PEFT's exact call: init "random", one
start, 10 iterations, random_state 123456789). Subspace k holds the output rows I_k and trains A_k (r_k x R) and
B_k (|I_k| x r_k), r_k = min(|I_k|, subspace_rank):

    h = W0 x + b0 + scatter_k(B_k A_k V^T [x; 1])        (the 1 only when the Linear has a bias)

V^T (PEFT's adamss_newB) is frozen; B starts at zeros (the model starts at W0), A at an orthonormal basis of the
subspace's top directions. PEFT saves A, B and V^T but not the clustering: a loaded adapter is clustered again from
W0, so the studio clusters exactly as PEFT does and needs scikit-learn for it (imported only here).

Adaptive subspace allocation (use_asa; PEFT's AdamssModel.update_and_allocate, which its Trainer callback calls after
each optimizer step with the step's gradients in place) runs from the trainer's after_step: between init_warmup and
final_warmup every step smooths each subspace's importance |w · g| and its uncertainty, and every mask_interval steps
the subspaces whose mean importance x uncertainty ranks below the scheduled number (from all of them down to
asa_target_subspaces, the decay's exponent asa_schedule_exponent) stop training, across all Linears at once. PEFT
stops them with requires_grad; the studio keeps the run's trainable set fixed and drops their gradients as backward
writes them, which leaves the optimizer exactly as PEFT's: a tensor without a gradient is not stepped.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import math
import random
import re
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..bases.frozen import FrozenBase
from ..bases.sites import LINEAR, Site
from ..errors import AdapterFileError, ConfigError
from ..model.studio_model import StudioModel
from .config import MethodConfig, option
from .mergeable import WeightUpdate
from .method import REPARAMETERISED, Method, MethodCard, TargetedMethod, code_line
from .oft import LINEAR_ONLY
from .peft_fields import flag, number, whole
from .peft_format import KEY_PREFIX, hf_name, module_path, modules_of, unknown

INITS = ("orthogonal", "none")
KMEANS_SEED = 123456789  # PEFT's clustering_Z: a fixed random_state, not a config field
KMEANS_ITERATIONS = 10  # PEFT's update_layer passes 10 as clustering_Z's iternum
SVD_ITERATIONS = 2  # PEFT's slice_pca and its Gram-matrix SVDs: niter=2
INSTALL = "pip install scikit-learn"


@dataclass(frozen=True)
class Layout:
    """One Linear's subspaces as PEFT computes them from W0: the frozen projection V^T, the output rows of each
    cluster and each subspace's rank; `left` (U, out x R) gives A's starting values. Shapes only on the meta
    device (new_b, left None)."""

    r: int
    in_width: int  # in_features, plus one for the bias column
    new_b: torch.Tensor | None
    segments: tuple[torch.Tensor, ...]
    ranks: tuple[int, ...]
    left: torch.Tensor | None

    def count(self) -> int:
        return sum(rank * (self.r + len(rows)) for rows, rank in zip(self.segments, self.ranks, strict=True))


def kmeans_class() -> type:
    """scikit-learn's KMeans (PEFT's clustering), or ConfigError saying how to install it."""
    state = random.getstate()  # scikit-learn's first import draws from Python's generator: give it back as it was
    try:
        from sklearn.cluster import KMeans
    except ImportError:
        raise ConfigError(f"adamss needs scikit-learn to cluster W0's singular vectors as PEFT does "
                          f"({INSTALL}, or pip install 'peft-studio[adamss]')") from None
    finally:
        random.setstate(state)
    return KMeans


def _cluster(left: torch.Tensor, num_subspaces: int) -> torch.Tensor:
    """PEFT's clustering_Z: k-means over the rows of U (raw, not normalised), on CPU in float32."""
    rows = left.detach().cpu().numpy().astype("float32")
    kmeans = kmeans_class()(n_clusters=min(num_subspaces, rows.shape[0]), init="random", n_init=1,
                            max_iter=KMEANS_ITERATIONS, random_state=KMEANS_SEED)
    return torch.from_numpy(kmeans.fit_predict(rows)).long()


def _gram_rank(block: torch.Tensor, config: AdamssConfig) -> int:
    """A subspace's rank: min(|I_k|, subspace_rank), or (use_dynamic_rank) the singular values of its Gram matrix
    above svd_threshold times the largest, at most subspace_rank; at least 1 (PEFT's update_layer)."""
    if not config.use_dynamic_rank:
        return max(1, min(len(block), config.subspace_rank))
    gram = block @ block.T
    # q is the full size, so the random projection spans everything: the values are exact up to rounding
    # (PEFT draws it from the global generator; a forked one leaves the studio's draws alone)
    with torch.random.fork_rng(**_fork_kwargs(gram.device)):
        torch.manual_seed(config.random_seed)
        _, values, _ = torch.svd_lowrank(gram, q=min(gram.shape), niter=SVD_ITERATIONS)
    kept = int((values > config.svd_threshold * values[0]).sum().item())
    return max(1, min(kept, config.subspace_rank, len(values)))


def _fork_kwargs(device: torch.device) -> dict[str, Any]:
    return {"devices": []} if device.type == "cpu" else {"devices": [device], "device_type": device.type}


def compute_layout(weight: torch.Tensor, bias: torch.Tensor | None, config: AdamssConfig) -> Layout:
    """PEFT's update_layer up to the trained tensors: slice_pca, clustering_Z, seg_locations and the ranks."""
    out_features, in_width = weight.shape[0], weight.shape[1] + (bias is not None)
    r = min(config.r, out_features, in_width)
    clusters = min(config.num_subspaces, out_features)
    if weight.is_meta:  # shapes only: the cluster sizes are unknown, their sum is not (validate refuses the rest)
        sizes = [out_features // clusters + (k < out_features % clusters) for k in range(clusters)]
        starts = [sum(sizes[:k]) for k in range(clusters)]
        segments = tuple(torch.arange(s, s + n) for s, n in zip(starts, sizes, strict=True))
        return Layout(r, in_width, None, segments, tuple(max(1, min(n, config.subspace_rank)) for n in sizes),
                      None)
    with_bias = torch.cat((weight, bias.unsqueeze(1)), dim=1) if bias is not None else weight
    matrix = with_bias.detach().to(torch.float32)
    with torch.random.fork_rng(**_fork_kwargs(matrix.device)):  # PEFT's slice_pca: seeded, the global one untouched
        torch.manual_seed(config.random_seed)
        u, _, v = torch.svd_lowrank(matrix, q=r, niter=SVD_ITERATIONS, M=None)
    left, new_b = u[:, :r].contiguous(), v[:, :r].T.contiguous()
    labels = _cluster(left, config.num_subspaces)
    segments = tuple(torch.where(labels == k)[0] for k in range(clusters))
    empty = sum(len(rows) == 0 for rows in segments)
    if empty:  # scikit-learn moves points into empty clusters; only identical rows of U can leave one
        raise ConfigError(f"adamss: k-means left {empty} of {clusters} subspaces empty on a {out_features} x "
                          f"{weight.shape[1]} Linear (PEFT fails there too); use fewer num_subspaces")
    ranks = tuple(_gram_rank(left[rows, :r], config) for rows in segments)
    return Layout(r, in_width, new_b.to(weight.dtype), segments, ranks, left)


# One layout per (W0, settings): k-means and the SVD run once however often a count or a form asks
# (tensors compare elementwise, so a WeakKeyDictionary cannot hold them: by id, dropped when W0 is collected)
_LAYOUTS: dict[int, tuple[weakref.ref, dict[tuple, Layout]]] = {}
LAYOUT_SETTINGS = ("r", "num_subspaces", "subspace_rank", "use_dynamic_rank", "svd_threshold", "random_seed")


def layout_of(layer: nn.Module, config: AdamssConfig) -> Layout:
    """The layout of a Linear (or of the Linear under an attached AdaMSS layer, unmerged W0). Layouts are
    computed on a base without another method's parts: attach gets a bare base, the count the one AdaMSS is on."""
    if isinstance(layer, WeightUpdate):  # merged or not: W0 and b0 as they were before the update
        weight, bias = layer.original_weight(), layer._unmerged_bias
        bias = getattr(layer.base_layer, "bias", None) if bias is None else bias
    elif isinstance(layer, nn.Linear):
        weight, bias = layer.weight, layer.bias
    else:
        raise ConfigError(f"adamss reads W0 from a Linear, and this site holds {type(layer).__name__}")
    key = (*(getattr(config, name) for name in LAYOUT_SETTINGS), weight._version,
           None if bias is None else bias._version)
    entry = _LAYOUTS.get(id(weight))
    if entry is None or entry[0]() is not weight:
        entry = _LAYOUTS[id(weight)] = (weakref.ref(weight), {})
        weakref.finalize(weight, _LAYOUTS.pop, id(weight), None)
    cached = entry[1]
    if key not in cached:
        cached[key] = compute_layout(weight, bias, config)
    return cached[key]


def _start_of_a(block: torch.Tensor, rank: int) -> torch.Tensor:
    """PEFT's A init: the QR basis of block^T times the top `rank` eigenvectors of the Gram matrix (rank x R)."""
    gram = block @ block.T
    u, _, _ = torch.svd_lowrank(gram, q=min(gram.shape[0], rank), niter=SVD_ITERATIONS)
    q, _ = torch.linalg.qr(block.T @ u[:, :rank], mode="reduced")
    return q.T.contiguous()


def _drop_stopped(layer: AdamssLinear, k: int, parameter: torch.Tensor) -> None:
    if not layer.active[k]:
        parameter.grad = None


class AdamssLinear(WeightUpdate):
    """A frozen Linear plus the scattered subspace updates B_k A_k V^T [x; 1]."""

    def __init__(self, base_layer: nn.Module, layout: Layout, init_weights: str) -> None:
        super().__init__(base_layer)
        weight = self.weight_out_in()
        dtype, device = weight.dtype, weight.device
        self.has_bias = getattr(base_layer, "bias", None) is not None
        self.settings: dict[str, Any] = {}  # the config values that decide outputs (set by attach)
        new_b = torch.empty(layout.r, layout.in_width) if layout.new_b is None else layout.new_b.clone()
        self.adamss_newB = nn.Parameter(new_b, requires_grad=False)  # frozen V^T, saved as PEFT saves its buffer
        starts, zeros = [], []
        for rows, rank in zip(layout.segments, layout.ranks, strict=True):
            a = torch.empty(rank, layout.r) if layout.left is None else \
                _start_of_a(layout.left[rows, :layout.r], rank).to(dtype)
            if init_weights == "orthogonal":  # zeros: the model starts at W0
                b = torch.zeros(len(rows), rank, dtype=dtype, device=device)
            else:  # PEFT's init_weights=None: a small random start, so the adapter acts from the first step
                b = torch.randn(len(rows), rank, dtype=dtype, device=device) * 0.01
            starts.append(nn.Parameter(a))
            zeros.append(nn.Parameter(b))
        self.ranks = list(layout.ranks)
        self.adamss_A = nn.ParameterList(starts)
        self.adamss_B = nn.ParameterList(zeros)
        order = torch.cat(layout.segments)  # PEFT's scatter_index: row j of the stacked B_k outputs is output order[j]
        self.scatter_index = order  # a plain attribute: PEFT does not save it, a load clusters again
        self.rows = torch.argsort(order)  # its inverse: output i is stacked row rows[i] (a gather, not a scatter)
        # ASA: which subspaces still train, and per subspace PEFT's smoothed [ipt_A, ipt_B, unc_A, unc_B]
        self.active = [True] * len(starts)
        self.scores: list[list[torch.Tensor | None]] = [[None] * 4 for _ in starts]

    def enable_asa(self) -> None:
        """Drop a stopped subspace's gradients as backward writes them (PEFT sets requires_grad False)."""
        for k, (a, b) in enumerate(zip(self.adamss_A, self.adamss_B, strict=True)):
            for parameter in (a, b):
                parameter.register_post_accumulate_grad_hook(functools.partial(_drop_stopped, self, k))

    @torch.no_grad()
    def update_importance(self, importance_beta: float, uncertainty_beta: float) -> None:
        """PEFT's AdamssLayer.update_importance: the uncertainty moves before the importance does."""
        for k, pair in enumerate(zip(self.adamss_A, self.adamss_B, strict=True)):
            for side, parameter in enumerate(pair):
                if parameter.grad is None:
                    continue
                scores = self.scores[k]
                if scores[side] is None:
                    scores[side], scores[side + 2] = torch.zeros_like(parameter), torch.zeros_like(parameter)
                importance = (parameter * parameter.grad).abs()
                scores[side + 2].mul_(uncertainty_beta).add_((importance - scores[side]).abs(),
                                                             alpha=1 - uncertainty_beta)
                scores[side].mul_(importance_beta).add_(importance, alpha=1 - importance_beta)

    def reset_importance(self) -> None:
        self.scores = [[None] * 4 for _ in self.scores]

    def stacked_b(self) -> torch.Tensor:
        """The B_k on a block diagonal, its rows in output order (out x sum r_k)."""
        return torch.block_diag(*self.adamss_B)[self.rows.to(self.adamss_newB.device)]

    def stacked_a(self) -> torch.Tensor:
        return torch.cat(list(self.adamss_A), dim=0)

    def with_ones(self, x: torch.Tensor) -> torch.Tensor:
        """[x; 1] when the Linear has a bias (V^T then has its column), else x."""
        if not self.has_bias:
            return x
        return torch.cat((x, torch.ones(*x.shape[:-1], 1, device=x.device, dtype=x.dtype)), dim=-1)

    def update_columns(self) -> torch.Tensor:
        """scatter(B_k A_k V^T): the change of [W0 | b0] (out x in_width)."""
        return self.stacked_b() @ self.stacked_a() @ self.adamss_newB

    def delta_weight(self) -> torch.Tensor:
        columns = self.update_columns()
        return columns[:, :-1] if self.has_bias else columns

    def merged_bias(self) -> torch.Tensor | None:
        if not self.has_bias:
            return None
        return self.base_layer.bias + self.update_columns()[:, -1]

    def update(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        projected = self.with_ones(x.to(self.adamss_newB.dtype)) @ self.adamss_newB.T  # V^T [x; 1]
        inner = (projected @ self.stacked_a().T).split(self.ranks, dim=-1)  # A_k V^T [x; 1], one per subspace
        # one product per B_k (a block diagonal would hold a gradient the size of out x sum r_k)
        stacked = torch.cat([part @ b.T for part, b in zip(inner, self.adamss_B, strict=True)], dim=-1)
        return result + stacked[..., self.rows.to(stacked.device)]  # scatter_k(B_k A_k V^T [x; 1])


@dataclass
class AdamssConfig(MethodConfig):
    r: int = option(100, "rank R of W0's SVD whose left singular vectors are clustered (clamped to min(out, in + "
                         "1) per Linear, as PEFT does)", low=1, high=4096)
    num_subspaces: int = option(5, "subspaces K the k-means clustering makes per Linear (at most out)", low=1,
                                high=4096)
    subspace_rank: int = option(1, "rank r_k of each subspace's update (at most the cluster's size)", low=1,
                                high=4096)
    init_weights: str = option("orthogonal", "orthogonal: B starts at zeros (the model starts at W0), A at the "
                                             "subspace's top directions; none: B starts small and random",
                               choices=INITS)
    use_dynamic_rank: bool = option(False, "each subspace's rank from its singular values above svd_threshold "
                                           "times the largest (at most subspace_rank)")
    svd_threshold: float = option(0.1, "the share of the largest singular value a direction needs to count "
                                       "(with use_dynamic_rank)", low=0.0, high=1.0)
    random_seed: int = option(0, "seed of the randomized SVD of W0 (PEFT's random_seed: a saved adapter is "
                                 "decomposed again with it)", low=0, high=2**31 - 1)
    use_asa: bool = option(False, "adaptive subspace allocation: while training, stop the least important "
                                  "subspaces (of all Linears together) on a schedule")
    asa_target_subspaces: int = option(50, "subspaces still training once the schedule ends (use_asa)", low=1,
                                       high=10**9)
    init_warmup: int = option(50, "step at which the schedule starts (use_asa)", low=0, high=10**9)
    final_warmup: int = option(1000, "step at which it reaches asa_target_subspaces and stops (use_asa)", low=1,
                               high=10**9)
    mask_interval: int = option(100, "steps between two reallocations (use_asa)", low=1, high=10**9)
    asa_importance_beta: float = option(0.85, "smoothing of the importance |w · g| (use_asa)", low=0.0, high=1.0)
    asa_uncertainty_beta: float = option(0.85, "smoothing of its uncertainty (use_asa)", low=0.0, high=1.0)
    asa_schedule_exponent: float = option(3.0, "the schedule's decay: all subspaces x progress^exponent down to "
                                               "the target (use_asa)", low=1e-6, high=1e6)
    targets: str | None = option(None, "comma list of Linear sites, e.g. q,v (Hugging Face names and site ids "
                                       "work too; default: the base's LoRA targets)")
    layers: str | None = option(None, "comma list of layer indices or ranges such as 0-3 (default: every layer)")


# the config fields PEFT writes as they are (its names are the studio's)
PEFT_SETTINGS = ("r", "num_subspaces", "subspace_rank", "use_dynamic_rank", "svd_threshold", "random_seed")
# adaptive subspace allocation (ASA): its fields, with PEFT's names; they shape training, not a model's outputs
ASA_SETTINGS = ("use_asa", "asa_target_subspaces", "init_warmup", "final_warmup", "mask_interval",
                "asa_importance_beta", "asa_uncertainty_beta", "asa_schedule_exponent")
ASA_WHOLE = {"asa_target_subspaces": (50, 1), "init_warmup": (50, 0), "final_warmup": (1000, 1),
             "mask_interval": (100, 1)}  # name -> (PEFT's default, least value)
ASA_NUMBERS = {"asa_importance_beta": (0.85, 0.0, 1.0), "asa_uncertainty_beta": (0.85, 0.0, 1.0),
               "asa_schedule_exponent": (3.0, 1e-6, 1e6)}  # name -> (PEFT's default, range)
LEAF = re.compile(r"(.+)\.(adamss_A\.\d+|adamss_B\.\d+|adamss_newB)")


class AdamssMethod(TargetedMethod):
    family_group = REPARAMETERISED
    name = "adamss"
    title = "AdaMSS"
    config_cls = AdamssConfig
    site_kinds = (LINEAR,)
    claims_kinds = ()  # a click on a Linear means LoRA unless AdaMSS is already chosen
    targets_default_from = "lora"  # PEFT's BERT default: query, value (its LoRA table)
    refused_layers = {"Conv1D": LINEAR_ONLY.format("AdaMSS")}
    peft_on_meta_device = False  # PEFT decomposes and clusters real weights: its count is compared on MiniLM
    example_space = {**Method.example_space, "r": (4, 8), "num_subspaces": (2, 3), "subspace_rank": (1, 2),
                     "init_weights": INITS,
                     ("use_dynamic_rank", "svd_threshold"): ((False, 0.1), (True, 0.1), (True, 0.5)),
                     "random_seed": (0, 3),
                     # a schedule that stops subspaces within a short run (every step, down to 3 by step 3)
                     ("use_asa", "init_warmup", "final_warmup", "mask_interval", "asa_target_subspaces"):
                         ((False, 50, 1000, 100, 50), (True, 0, 3, 1, 3))}
    peft_space = {"r": (4, 8), "num_subspaces": (2, 3), "subspace_rank": (1, 2), "use_dynamic_rank": (False, True),
                  "random_seed": (0, 5), ("use_asa", "init_warmup", "final_warmup"): ((False, 50, 1000), (True, 2, 9))}
    peft_type = "ADAMSS"
    exchange_tolerance = 1e-5  # the bar for outputs equal to PEFT's
    peft_config_fields = {"num_subspaces": ((int,), "a whole number"), "subspace_rank": ((int,), "a whole number"),
                          "init_weights": ((str, bool, type(None)), "orthogonal or null"),
                          "use_asa": ((bool,), "true or false"), "use_dynamic_rank": ((bool,), "true or false"),
                          "svd_threshold": ((int, float), "a number"), "random_seed": ((int,), "a whole number"),
                          **{name: ((int,), "a whole number") for name in ASA_WHOLE},
                          **{name: ((int, float), "a number") for name in ASA_NUMBERS}}
    glyph = "K∪"
    colour = "#6c7a0f"
    card = MethodCard(
        where="beside a frozen Linear: low-rank updates inside subspaces of W0's own singular vectors, one per "
              "cluster of output rows",
        intuition="outputs whose singular vectors look alike change together: cluster them, and give each "
                  "cluster its own small update in the space W0 already spans",
        advantages="few numbers per Linear (K·r_k·R + r_k·out); each subspace adapts independently; with use_asa "
                   "training keeps only the subspaces that matter most, across all Linears; mergeable into W0 and b0",
        limitations="an SVD and a k-means clustering of every adapted W0 when attaching and again when loading "
                    "(needs scikit-learn); changes only what W0's top R right singular vectors span",
        formula="h = W0 x + b0 + scatter_k(B_k A_k V^T [x; 1])",
    )

    # ---- where and how big ----------------------------------------------------------------------------
    def validate(self, config: AdamssConfig, base: FrozenBase) -> None:
        super().validate(config, base)
        for site in self.selected_sites(config, base):
            widest = min(config.r, site.out_features, site.in_features + 1)
            if config.subspace_rank > widest:
                raise ConfigError(f"subspace_rank ({config.subspace_rank}) must be at most min(r, out, in + 1) = "
                                  f"{widest} on {site.id}: A_k has at most that many rows, B_k would not fit it "
                                  "(PEFT fails there)")
        if config.use_asa and config.init_warmup >= config.final_warmup:
            raise ConfigError(f"init_warmup ({config.init_warmup}) must be below final_warmup ({config.final_warmup}) "
                              "with use_asa: the schedule needs steps to stop subspaces in (PEFT refuses it too)")
        if base.on_meta_device and (config.subspace_rank > 1 or config.use_dynamic_rank):
            raise ConfigError("adamss on a shapes-only (meta-device) base: the subspaces' sizes come from k-means "
                              "on W0's singular vectors, which has no values here, so subspace_rank above 1 or "
                              "use_dynamic_rank has no count; use subspace_rank 1")
        if importlib.util.find_spec("sklearn") is None:  # looked up, not imported: the method list greys it out
            raise ConfigError(f"adamss needs scikit-learn to cluster W0's singular vectors as PEFT does "
                              f"({INSTALL}, or pip install 'peft-studio[adamss]')")
        # Structure only: the window asks every method whether it fits each base on its GUI thread, and a layout
        # costs an SVD and a k-means per Linear (and scikit-learn's import); attach and the count compute them,
        # and refuse a layout k-means leaves an empty subspace in.

    def layouts(self, config: AdamssConfig, base: FrozenBase) -> list[tuple[Site, Layout]]:
        return [(site, layout_of(base.get_submodule(site.module_path), config))
                for site in self.selected_sites(config, base)]

    def attach(self, model: StudioModel, config: AdamssConfig) -> None:
        for site, layout in self.layouts(config, model.base):
            original = model.base.get_submodule(site.module_path)
            layer = AdamssLinear(original, layout, config.init_weights)
            layer.settings = {name: getattr(config, name) for name in LAYOUT_SETTINGS}
            if config.use_asa:
                layer.enable_asa()
            model.swap(site.module_path, layer)

    def after_step(self, model: StudioModel, config: AdamssConfig, step: int) -> None:
        if config.use_asa:
            allocate([layer for _, layer in modules_of(model.base, AdamssLinear)], config, step)

    def step_report(self, model: StudioModel, config: AdamssConfig) -> dict[str, Any]:
        if not config.use_asa:
            return {}
        layers = [layer for _, layer in modules_of(model.base, AdamssLinear)]
        return {"active_subspaces": sum(sum(layer.active) for layer in layers),
                "subspaces": sum(len(layer.active) for layer in layers)}

    def parameter_count(self, config: AdamssConfig, base: FrozenBase) -> int:
        return sum(layout.count() for _, layout in self.layouts(config, base))

    def formula_text(self, config: AdamssConfig, base: FrozenBase) -> str:
        layouts = self.layouts(config, base)
        if not layouts:
            return "0"
        widths = sorted({layout.r for _, layout in layouts})
        counts = sorted({len(layout.segments) for _, layout in layouts})  # K, or out where a Linear has fewer
        ranks = (f"r_k = its singular values above {config.svd_threshold:g} x the largest, at most "
                 f"{config.subspace_rank}" if config.use_dynamic_rank else f"r_k = min(|I_k|, {config.subspace_rank})")
        return (f"{len(layouts)} Linear(s) x {'/'.join(map(str, counts))} subspaces: sum of r_k x (R + |I_k|), R = "
                f"{'/'.join(map(str, widths))}, {ranks} = {self.parameter_count(config, base):,}")

    def code(self, config: AdamssConfig) -> str:
        return f"{code_line(AdamssLinear.update, 'V^T [x; 1]')}  # then: " \
               f"{code_line(AdamssLinear.update, 'scatter_k')}"

    def shape_notes(self, config: AdamssConfig, base: FrozenBase, seq_len: int) -> list[str]:
        return [f"{s.id}: V^T {layout.r}x{layout.in_width} frozen (from W0's SVD); {len(layout.segments)} subspaces "
                f"of {', '.join(str(len(rows)) for rows in layout.segments)} output rows, ranks "
                f"{', '.join(map(str, layout.ranks))}" for s, layout in self.layouts(config, base)]

    # ---- Hugging Face PEFT exchange --------------------------------------------------------------------
    def peft_export(self, base: FrozenBase, config: AdamssConfig) -> tuple[dict, dict[str, torch.Tensor]]:
        targets, tensors = [], {}
        for path, layer in modules_of(base, AdamssLinear):
            name = hf_name(path, base)
            targets.append(name)
            for k, a in enumerate(layer.adamss_A):
                tensors[f"{KEY_PREFIX}{name}.adamss_A.{k}"] = a
            for k, b in enumerate(layer.adamss_B):
                tensors[f"{KEY_PREFIX}{name}.adamss_B.{k}"] = b
            tensors[f"{KEY_PREFIX}{name}.adamss_newB"] = layer.adamss_newB
        settings: dict[str, Any] = {name: getattr(config, name) for name in PEFT_SETTINGS}
        settings.update({name: getattr(config, name) for name in ASA_SETTINGS})
        settings.update({"init_weights": None if config.init_weights == "none" else config.init_weights,
                         "target_modules": targets, "layers_to_transform": None, "layers_pattern": None})
        return settings, tensors

    def peft_notes(self, config: AdamssConfig, base: FrozenBase) -> list[str]:
        try:
            version = importlib.metadata.version("scikit-learn")
        except importlib.metadata.PackageNotFoundError:
            version = "(not installed)"
        return [f"PEFT clusters W0's singular vectors again when it loads this adapter (the clustering is not "
                f"saved): it needs scikit-learn, and the subspaces were made with scikit-learn {version}; "
                "another version may cluster differently, and PEFT then loads the tensors into other rows.", ""]

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict, where: str) -> tuple[dict, dict]:
        init = peft_config.get("init_weights", "orthogonal")
        if init not in ("orthogonal", None, False):
            raise AdapterFileError(f"{where}: init_weights must be orthogonal or null (got {str(init)[:40]!r})")
        options: dict[str, Any] = {
            "r": whole(peft_config, "r", where, 100, high=4096),
            "num_subspaces": whole(peft_config, "num_subspaces", where, 5, high=4096),
            "subspace_rank": whole(peft_config, "subspace_rank", where, 1, high=4096),
            "init_weights": "orthogonal" if init == "orthogonal" else "none",
            "use_dynamic_rank": flag(peft_config, "use_dynamic_rank", where, False),
            "svd_threshold": number(peft_config, "svd_threshold", where, 0.1, 0.0, 1.0),
            "random_seed": whole(peft_config, "random_seed", where, 0, low=0, high=2**31 - 1),
            "use_asa": flag(peft_config, "use_asa", where, False),
            **{name: whole(peft_config, name, where, default, low=low, high=10**9)
               for name, (default, low) in ASA_WHOLE.items()},
            **{name: number(peft_config, name, where, default, low, high)
               for name, (default, low, high) in ASA_NUMBERS.items()}}
        if options["use_asa"] and options["init_warmup"] >= options["final_warmup"]:
            raise AdapterFileError(f"{where}: init_warmup ({options['init_warmup']}) must be below final_warmup "
                                   f"({options['final_warmup']}) with use_asa (PEFT refuses it too)")
        studio: dict[str, torch.Tensor] = {}
        found: dict[str, set[str]] = {}
        for key, tensor in tensors.items():
            match = LEAF.fullmatch(key)
            module = module_path(match.group(1)) if match else None
            if match is None:
                raise unknown(where, key, "not an AdaMSS tensor (expected <module>.adamss_A.<k> / adamss_B.<k> / "
                                          "adamss_newB)")
            if module is None:
                raise unknown(where, key, "unknown target module: not a module of a BERT encoder or a decoder")
            if tensor.dim() != 2:
                raise unknown(where, key, f"has shape {tuple(tensor.shape)}; AdaMSS tensors are matrices")
            studio[f"{module}.{match.group(2)}"] = tensor
            found.setdefault(module, set()).add(match.group(2).split(".")[0])
        for module, leaves in found.items():
            if leaves != {"adamss_A", "adamss_B", "adamss_newB"}:
                raise unknown(where, module, f"holds {', '.join(sorted(leaves))}; an AdaMSS module has adamss_A, "
                                             "adamss_B and adamss_newB")
        return options, studio

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        for path, layer in modules_of(base, AdamssLinear):
            differ = [name for name in LAYOUT_SETTINGS if layer.settings[name] != options[name]]
            if differ:
                raise AdapterFileError(f"{where}: the model's {path} differs from the adapter in {', '.join(differ)}")


# ---- adaptive subspace allocation (PEFT's AdamssModel.update_and_allocate) -------------------------------------
def allocate(layers: list[AdamssLinear], config: AdamssConfig, step: int) -> None:
    """After optimizer step `step` (0 for a run's first, as transformers' global_step at on_optimizer_step), its
    gradients in place: smooth the importance within the warmup window, and at each mask interval in it stop
    every subspace outside the scheduled number of the most important, then restart the smoothing."""
    if not layers or not config.init_warmup <= step <= config.final_warmup:
        return
    for layer in layers:
        layer.update_importance(config.asa_importance_beta, config.asa_uncertainty_beta)
    if step % config.mask_interval == 0:
        _stop_all_but(scheduled_subspaces(step, config, sum(len(layer.active) for layer in layers)), layers)
        for layer in layers:
            layer.reset_importance()


def scheduled_subspaces(step: int, config: AdamssConfig, total: int) -> int:
    """PEFT's _schedule_threshold inside the warmup window: target + (total - target) x (1 - progress)^exponent."""
    remaining = 1.0 - (step - config.init_warmup) / (config.final_warmup - config.init_warmup)
    remaining = max(0.0, min(1.0, remaining))
    return int(config.asa_target_subspaces + (total - config.asa_target_subspaces)
               * (remaining**config.asa_schedule_exponent))


def _stop_all_but(keep: int, layers: list[AdamssLinear]) -> None:
    """PEFT's _global_mask_to_target: rank every scored subspace of every Linear by mean(ipt · unc) over A plus
    over B; those not above the keep-th largest stop (a subspace without scores, stopped before, stays stopped)."""
    scored = [(layer, k, (s[0] * s[2]).mean() + (s[1] * s[3]).mean()) for layer in layers
              for k, s in enumerate(layer.scores) if s[0] is not None and s[1] is not None]
    if not scored:
        return
    values = torch.stack([score for _, _, score in scored])
    threshold = -math.inf if keep >= len(scored) else -torch.kthvalue(-values, keep)[0].item()
    for layer, k, score in scored:
        layer.active[k] = float(score) > threshold
        if not layer.active[k]:
            layer.adamss_A[k].grad = layer.adamss_B[k].grad = None
