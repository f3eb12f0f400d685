"""AdaLoRA's rank allocator (PEFT's RankAllocator and AdaLoraModel.update_and_allocate), step for step.

After every optimizer step, while the schedule's pruning phase lasts, each trainable entry p of P, Λ and Q gets an
importance |p * grad| smoothed by beta1 and an uncertainty |importance - smoothed| smoothed by beta2; a singular
triplet's score is Λ_i's score plus the mean score of P's column i and of Q's row i. The rank budget falls from the
ranks there are (init) to target_r per Linear, cubically between tinit and total_step - tfinal; every deltaT steps
the triplets scoring at or below the (init - budget)-th smallest score get Λ_i = 0. At total_step - tfinal the
budget is target and the pattern is fixed; after it the same triplets are zeroed again after each step.

Scores live here, as plain tensors outside the model (not parameters, not buffers): a run's frozen tensors stay
bit-identical, and the window reads the result through RankGrid, plain numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError


class RankAllocator(nn.Module):
    """The schedule and the importance scores of one AdaLoRA adapter (kept in StudioModel.extras; no tensors of
    its own that a census would list)."""

    def __init__(self, target_r: int, tinit: int, tfinal: int, delta_t: int, beta1: float, beta2: float,
                 total_step: int) -> None:
        super().__init__()
        self.target_r, self.tinit, self.tfinal, self.delta_t = target_r, tinit, tfinal, delta_t
        self.beta1, self.beta2, self.total_step = beta1, beta2, total_step
        self.total: int | None = None  # total_step in force for this run (the config's, else the run's end)
        self.budget: int | None = None  # the last budget computed (None before the first step)
        self.scores: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(parameter) -> (avg ipt, avg unc)

    # ---- the run -------------------------------------------------------------------------------------
    def start(self, layers: list[Any], end_step: int) -> None:
        """Resolve total_step for a run ending before `end_step` and check that its schedule can run."""
        total = self.total_step or end_step
        if self.tinit >= total - self.tfinal:
            raise ConfigError(f"AdaLoRA's schedule leaves no step to reallocate ranks in: tinit ({self.tinit}) must "
                              f"be below total_step - tfinal ({total} - {self.tfinal}); lower tinit or tfinal, or "
                              "train for more steps")
        initial, target = self.initial_budget(layers), self.target_budget(layers)
        if end_step - 1 > self.tinit and initial <= target:
            raise ConfigError(f"AdaLoRA has nothing to prune: target_r x {len(layers)} Linears = {target} is not "
                              f"below the {initial} ranks there are (raise init_r or lower target_r)")
        self.total = total

    @staticmethod
    def initial_budget(layers: list[Any]) -> int:
        return sum(layer.r for layer in layers)  # PEFT's init_bgt: the rows of every lora_A

    def target_budget(self, layers: list[Any]) -> int:
        return self.target_r * len(layers)

    def budget_schedule(self, layers: list[Any], step: int) -> tuple[int, bool]:
        """(budget, whether to prune at this step): PEFT's cubic schedule."""
        initial, target, total = self.initial_budget(layers), self.target_budget(layers), self.total
        assert total is not None, "start() before the first step"
        if step <= self.tinit:
            return initial, False
        if step > total - self.tfinal:
            return target, True
        mul_coeff = 1 - (step - self.tinit) / (total - self.tfinal - self.tinit)
        return int((initial - target) * (mul_coeff ** 3) + target), step % self.delta_t == 0

    def update_and_allocate(self, layers: list[Any], step: int) -> None:
        """After the optimizer step `step` (its gradients still in place)."""
        assert self.total is not None, "start() before the first step"
        end_of_pruning = self.total - self.tfinal
        if step < end_of_pruning:
            self.update_importance(layers)
            self.budget, prune = self.budget_schedule(layers, step)
            if prune:
                self.mask_to_budget(layers, self.budget)
        elif step == end_of_pruning:  # the final pattern: pruned to target_r on average, then held
            self.budget, _ = self.budget_schedule(layers, step)
            self.mask_to_budget(layers, self.budget)
            self.scores.clear()
        else:
            with torch.no_grad():
                for layer in layers:
                    if layer.kept is not None:
                        layer.lora_E.masked_fill_(~layer.kept.view(-1, 1), 0.0)

    # ---- importance ---------------------------------------------------------------------------------
    def update_importance(self, layers: list[Any]) -> None:
        with torch.no_grad():
            for layer in layers:
                for parameter in (layer.lora_A, layer.lora_B, layer.lora_E):
                    grad = parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)
                    ipt = (parameter * grad).abs().detach()
                    avg_ipt, avg_unc = self.scores.get(id(parameter), (torch.zeros_like(parameter),) * 2)
                    avg_ipt = self.beta1 * avg_ipt + (1 - self.beta1) * ipt
                    avg_unc = self.beta2 * avg_unc + (1 - self.beta2) * (ipt - avg_ipt).abs()
                    self.scores[id(parameter)] = (avg_ipt, avg_unc)

    def _element_score(self, parameter: torch.Tensor) -> torch.Tensor:
        avg_ipt, avg_unc = self.scores[id(parameter)]
        return avg_ipt * avg_unc

    def triplet_scores(self, layer: Any) -> torch.Tensor:
        """One score per singular triplet: Λ_i's plus the mean over Q's row i and over P's column i."""
        q = torch.mean(self._element_score(layer.lora_A), dim=1, keepdim=True)
        p = torch.mean(self._element_score(layer.lora_B), dim=0, keepdim=False).view(-1, 1)
        return self._element_score(layer.lora_E).view(-1) + torch.cat([q, p], dim=1).sum(dim=1).view(-1)

    def mask_to_budget(self, layers: list[Any], budget: int) -> None:
        """Zero the singular values of the (initial - budget) lowest-scoring triplets across every layer."""
        if not all(id(layer.lora_E) in self.scores for layer in layers):
            return  # no importance measured in this schedule yet (a run that starts after its pruning phase)
        scores = [self.triplet_scores(layer) for layer in layers]
        threshold = torch.kthvalue(torch.cat(scores), k=self.initial_budget(layers) - budget)[0].item()
        with torch.no_grad():
            for layer, score in zip(layers, scores, strict=True):
                layer.lora_E.masked_fill_(score.view(-1, 1) <= threshold, 0.0)
                layer.kept = ~(score <= threshold)


@dataclass(frozen=True)
class RankGrid:
    """AdaLoRA's live ranks per adapted site: what a window draws as a layers x targets grid."""

    cells: dict[str, tuple[int, int]]  # site id -> (live rank, the layer's size)
    layer_of: dict[str, int | None]  # site id -> its layer
    name_of: dict[str, str]  # site id -> its target name (the grid's column)
    init_r: int
    target_r: int
    budget: int | None  # the allocator's current total budget (None before training)

    @property
    def layers(self) -> list[int | None]:
        return sorted(set(self.layer_of.values()), key=lambda v: -1 if v is None else v)

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(self.name_of.values()))

    def rank(self, layer: int | None, name: str) -> int | None:
        """The live rank at (layer, target), None where nothing is adapted."""
        for site, (live, _) in self.cells.items():
            if self.layer_of[site] == layer and self.name_of[site] == name:
                return live
        return None

    @property
    def total(self) -> int:
        return sum(live for live, _ in self.cells.values())

    def as_plain(self) -> dict[str, Any]:
        return {"cells": {site: list(value) for site, value in self.cells.items()}, "layer_of": dict(self.layer_of),
                "name_of": dict(self.name_of), "init_r": self.init_r, "target_r": self.target_r,
                "budget": self.budget}

    @staticmethod
    def from_plain(plain: dict[str, Any]) -> RankGrid:
        return RankGrid({site: (int(v[0]), int(v[1])) for site, v in plain["cells"].items()}, plain["layer_of"],
                        plain["name_of"], plain["init_r"], plain["target_r"], plain["budget"])

    def lines(self) -> list[str]:
        """The grid as text: one row per layer, one column per target."""
        names = self.names
        width = max(5, *(len(n) for n in names))
        rows = ["layer  " + " ".join(n.rjust(width) for n in names)]
        for layer in self.layers:
            cells = [self.rank(layer, name) for name in names]
            rows.append(f"{'-' if layer is None else layer:>5}  " +
                        " ".join(("" if c is None else str(c)).rjust(width) for c in cells))
        budget = "" if self.budget is None else f", budget {self.budget}"
        rows.append(f"total rank {self.total} (init_r {self.init_r}, target_r {self.target_r} per Linear{budget})")
        return rows
