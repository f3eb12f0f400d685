"""Compare the family on an architecture without weights: where each method puts its parameters, how
many, and what training it would need in memory (memory_scale's ledger). No training: the base is on
the meta device (shapes only), so a 70B model is compared in seconds and a few hundred MB.

One base is built once and each method is attached, counted and detached again (detach restores the
base exactly), instead of one whole experiment per method."""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from ..bases import create_base, uses_dataset_vocabulary
from ..bases.frozen import FrozenBase
from ..bases.meta_device import on_meta
from ..data import TextDataset
from ..errors import ConfigError, OutputError, PeftStudioError
from ..files.safe_io import write_csv_atomically
from ..memory.at_scale import GIB, MemoryPlan, frozen_storage, ledger
from ..methods import METHODS, get_method
from ..model.census import take_census
from ..model.studio_model import StudioModel
from .compare import TABLE_WIDTH, human_bytes

DEVICE_GB = 24  # the "fits" column: a common single GPU


@dataclass(frozen=True)
class PlacementRow:
    method: str
    title: str
    sites: int  # insertion points the method uses
    trainable: int  # method parameters plus the classification head
    percent: float  # of the base's parameters
    adapter_bytes: int  # the trainable tensors in fp32: what one more task costs on disk
    memory_bytes: int  # the ledger's total for training it under the plan
    weights: str  # the frozen weights' storage the plan used for this method
    skipped: str = ""  # why the method could not be placed on this base


def compare_placements(base_name: str, dataset: TextDataset, methods: Sequence[str] | None = None,
                       plan: MemoryPlan | None = None, seed: int = 0,
                       base_options: dict | None = None) -> Iterator[PlacementRow]:
    """One row per method of the registry (or `methods`), in order; a method the base refuses gives a row
    with `skipped` set. A method that quantizes the base (QLoRA) is counted in its own NF4 storage."""
    plan = plan or MemoryPlan()
    plan.check()
    names = list(methods) if methods else list(METHODS)
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    torch.manual_seed(seed)
    tokenizer = dataset.make_tokenizer() if uses_dataset_vocabulary(base_name) else None
    base = create_base(base_name, tokenizer, **(base_options or {}))
    total = sum(p.numel() for p in base.parameters())
    for name in names:
        yield _row(base, name, dataset, plan, total)


def _row(base: FrozenBase, name: str, dataset: TextDataset, plan: MemoryPlan, total: int) -> PlacementRow:
    method = get_method(name)
    model = StudioModel(base)
    try:
        config = method.config({})
        method.validate(config, base)
        with on_meta() if base.on_meta_device else contextlib.nullcontext():
            method.attach(model, config)
            model.add_head(dataset.num_labels, trainable=not config.freeze_head)
        census = take_census(model)
        sites = len(method.selected_sites(config, base))
        change = method.shape_change(config)  # prompt tokens lengthen the sequence, prefix keys only attention
        weights = frozen_storage(census, plan.weights)
        planned = replace(plan, weights=weights, extra_tokens=plan.extra_tokens + change.input_tokens,
                          extra_keys=plan.extra_keys + change.key_tokens)
        needed = ledger(census, base, planned).total
    except PeftStudioError as exc:
        return PlacementRow(name, method.title, 0, 0, 0.0, 0, 0, plan.weights, skipped=str(exc))
    finally:
        model.detach_method()
    return PlacementRow(name, method.title, sites, census.trainable, 100.0 * census.trainable / max(total, 1),
                        4 * census.trainable, needed, weights)


def placement_table(rows: Sequence[PlacementRow], plan: MemoryPlan, device_gb: int = DEVICE_GB) -> str:
    """The rows as a text table; the fewest trainable parameters and the least memory are starred."""
    placed = [r for r in rows if not r.skipped]
    fewest = min((r.trainable for r in placed), default=None)
    least = min((r.memory_bytes for r in placed), default=None)
    lines = [f"{'method':16} {'sites':>5} {'trainable':>15} {'% of base':>10} {'adapter':>10} "
             f"{'memory to train':>16} {'weights':8} fits {device_gb} GB"]
    for r in rows:
        if r.skipped:
            lines.append(textwrap.fill(f"{r.method:16} skipped: {r.skipped}", TABLE_WIDTH, subsequent_indent=" " * 17))
            continue
        star_t = "*" if r.trainable == fewest else " "
        star_m = "*" if r.memory_bytes == least else " "
        lines.append(f"{r.method:16} {r.sites:>5} {r.trainable:>14,}{star_t} {r.percent:>9.4f}% "
                     f"{human_bytes(r.adapter_bytes):>10} {r.memory_bytes / GIB:>12.1f} GiB{star_m} {r.weights:8} "
                     f"{'yes' if r.memory_bytes <= device_gb * GIB else 'no'}")
    lines.append(textwrap.fill(f"plan: batch {plan.batch} x {plan.seq_len} tokens, optimizer {plan.optimizer}, "
                               f"{'gradient checkpointing' if plan.checkpointing else 'no checkpointing'}; * = best "
                               "in column. No training on a meta-device base: counts and memory only.", TABLE_WIDTH,
                               subsequent_indent="  "))
    return "\n".join(lines)


def write_placement_csv(rows: Sequence[PlacementRow], path: str | Path) -> Path:
    """The rows with raw numbers (parameters, bytes), one per method; skipped methods keep their reason."""
    names = [f.name for f in fields(PlacementRow)]
    return write_csv_atomically(path, names, ([getattr(row, name) for name in names] for row in rows), OutputError)
