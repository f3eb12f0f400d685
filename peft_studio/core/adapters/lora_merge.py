"""Weight updates merged into the weights and back (with measured latency and an output check), and LoRA
adapters combined into a new one as PEFT's `LoraModel.add_weighted_adapter` does ('linear', 'cat').

Merging folds each method's update (LoRA's (alpha/r) B A, DoRA's rescaled rows, ...) into W0 so inference runs
the plain Linear; unmerging restores W0 from the copy each layer keeps (exact, not a subtraction; see
methods/mergeable.py). The combination follows PEFT 0.21's
`add_weighted_adapter`: the new adapter has rank r (linear: all ranks must be equal) or the sum of
the ranks (cat), alpha equal to its rank (scale 1), targets the union of the sources' sites, and
  linear: A = sum_i sign_i sqrt(|w_i s_i|) A_i,  B = sum_i sqrt(|w_i s_i|) B_i   (s_i = alpha_i / r_i)
  cat:    A = [w_1 s_1 A_1; w_2 s_2 A_2; ...],    B = [B_1, B_2, ...]
so 'cat' reproduces sum_i w_i s_i B_i A_i exactly and 'linear' only approximately (cross terms).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..methods.lora import LoraLinear
from ..methods.mergeable import mergeable_layers, weight_updates
from ..model.experiment import Experiment
from .adapter_set import AdapterSet, SetAdapter

COMBINATIONS = ("linear", "cat")


def merge_all(model: nn.Module) -> int:
    """Fold every weight update into its Linear; returns how many were merged."""
    layers = weight_updates(model)
    for _, layer in layers:
        layer.merge()
    return len(layers)


def unmerge_all(model: nn.Module) -> int:
    layers = weight_updates(model)
    for _, layer in layers:
        layer.unmerge()
    return len(layers)


@dataclass(frozen=True)
class MergeReport:
    """Forward latency with the update beside W0 and folded into it, and how far the outputs differ."""

    layers: int
    unmerged_ms: float  # median forward time of the batch
    merged_ms: float
    max_abs_difference: float  # between the logits, merged vs not
    equal: bool  # within `atol` (float rounding differs: W0 x + s B A x is not (W0 + s B A) x bit for bit)
    atol: float

    def summary(self) -> str:
        return (f"{self.layers} merged layer(s): {self.unmerged_ms:.2f} ms unmerged, {self.merged_ms:.2f} ms merged; "
                f"outputs {'equal' if self.equal else 'DIFFER'} (max |diff| {self.max_abs_difference:.2e})")


@torch.no_grad()
def _median_ms(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, repeats: int) -> tuple[float, torch.Tensor]:
    out = model(ids, mask)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        out = model(ids, mask)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), out


def measure_merge(experiment: Experiment, texts: Sequence[str] | None = None, repeats: int = 10,
                  atol: float = 1e-5, keep_merged: bool = False) -> MergeReport:
    """Time the forward pass before and after merging and compare outputs; unmerges again unless told."""
    model = experiment.model
    layers = weight_updates(model)
    if not layers:
        raise ConfigError("merge: the model has no weight-update layers to merge (LoRA, DoRA, ...)")
    if not mergeable_layers(model):
        raise ConfigError("merge: a 4-bit quantized Linear cannot be merged; dequantize first")
    if any(layer.merged for _, layer in layers):
        raise ConfigError("merge: the update is already merged; unmerge it first")
    if texts is None:
        texts = list(experiment.dataset.val_texts or experiment.dataset.train_texts)[:64]
    ids, mask = (t.to(experiment.device) for t in experiment.tokenizer.batch(list(texts)))
    was_training = model.training
    model.eval()
    try:
        before_ms, before = _median_ms(model, ids, mask, repeats)
        merge_all(model)
        after_ms, after = _median_ms(model, ids, mask, repeats)
        if not keep_merged:
            unmerge_all(model)
    except BaseException:
        unmerge_all(model)
        raise
    finally:
        model.train(was_training)
    difference = float((before - after).abs().max()) if before.numel() else 0.0
    return MergeReport(len(layers), before_ms, after_ms, difference, difference <= atol, atol)


# ---- weighted combination (PEFT's add_weighted_adapter) --------------------------------------------
def _lora_modules(member: SetAdapter) -> dict[str, LoraLinear]:
    return {path: module for path, _, module in member.swaps if isinstance(module, LoraLinear)}


def add_weighted_adapter(adapters: AdapterSet, sources: Sequence[str], weights: Sequence[float], name: str,
                         combination_type: str = "linear") -> SetAdapter:
    """A new LoRA adapter in the set combining `sources` with `weights`; it becomes the active one.

    The head and labels are the first source's (PEFT combines only the LoRA matrices)."""
    if not sources:
        raise ConfigError("combine: name at least one LoRA adapter")
    if len(weights) != len(sources):
        raise ConfigError(f"combine: {len(sources)} adapters but {len(weights)} weights")
    if not all(math.isfinite(w) for w in weights):
        raise ConfigError("combine: weights must be finite numbers")
    if combination_type not in COMBINATIONS:
        raise ConfigError(f"combine: combination must be one of {', '.join(COMBINATIONS)} (got {combination_type!r})")
    members = [adapters.get(source) for source in sources]
    not_lora = [m.name for m in members if m.setup.method != "lora"]
    if not_lora:
        raise ConfigError(f"combine: {', '.join(not_lora)} is not a LoRA adapter")
    if any(layer.merged for m in members for layer in _lora_modules(m).values()):
        raise ConfigError("combine: unmerge the LoRA adapters first")
    combination_type = "linear" if len(members) == 1 else combination_type  # as PEFT
    ranks = [m.config.r for m in members]
    if combination_type == "linear" and len(set(ranks)) != 1:
        raise ConfigError(f"combine: 'linear' needs equal ranks (got {', '.join(map(str, ranks))}); use 'cat'")
    rank = ranks[0] if combination_type == "linear" else sum(ranks)
    parts = [_lora_modules(m) for m in members]
    paths = {path for part in parts for path in part}
    first = members[0]
    sites = [s for s in first.method.usable_sites(adapters.base) if s.module_path in paths]
    options = first.method.options_for_sites(sites, adapters.base, {**first.setup.options, "r": rank,
                                                                     "alpha": float(rank)})
    result = adapters.add(name, "lora", options, first.dataset, seed=first.setup.seed)
    with torch.no_grad():
        for path, target in _lora_modules(result).items():
            found = [(part[path], weight) for part, weight in zip(parts, weights, strict=True) if path in part]
            if combination_type == "cat":
                a = torch.cat([layer.lora_A * weight * layer.scaling for layer, weight in found], dim=0)
                b = torch.cat([layer.lora_B for layer, _ in found], dim=1)
                target.lora_A.zero_()
                target.lora_B.zero_()
                target.lora_A[: a.shape[0], :] = a
                target.lora_B[:, : b.shape[1]] = b
            else:
                scaled = [weight * layer.scaling for layer, weight in found]
                weights_a = torch.tensor([math.sqrt(abs(w)) * (1 if w >= 0 else -1) for w in scaled])
                weights_b = torch.tensor([math.sqrt(abs(w)) for w in scaled])
                target.lora_A.copy_(_weighted_sum([layer.lora_A for layer, _ in found], weights_a))
                target.lora_B.copy_(_weighted_sum([layer.lora_B for layer, _ in found], weights_b))
        head, source_head = result.model.head, first.model.head
        if head is not None and source_head is not None:
            head.weight.copy_(source_head.weight)
            head.bias.copy_(source_head.bias)
    return result


def _weighted_sum(tensors: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """PEFT's task_arithmetic: stack, multiply by the broadcast weights, sum over the stack."""
    stacked = torch.stack(tensors, dim=0)
    return (stacked * weights.view(-1, *([1] * (stacked.dim() - 1)))).sum(dim=0)
