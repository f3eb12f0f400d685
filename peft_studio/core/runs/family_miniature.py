"""The family map's miniature of a base: one row for what comes before the layers (prompt, embeddings), one row
per layer, one for what comes after (final norm, pooling, the head); each row holds one cell per site of the
base, in the base's own site order, and an "other" cell for tensors that sit at no site. Drawn from the base's
declaration alone (sites, blocks), so any base gets one; a method lights the cells its trainable tensors are in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..bases.frozen import FrozenBase
from ..bases.sites import EMBEDDING, PROMPT, Block, PathIndex
from ..model.census import Census

HEAD = "head"
BEFORE, AFTER = "before", "after"
BEFORE_KINDS = (PROMPT, EMBEDDING)  # sites outside the layers that come before them


@dataclass(frozen=True)
class MiniCell:
    key: str  # a site id, HEAD, or "<row>:other"
    label: str  # for tooltips: the site's label or what the cell holds
    kind: str  # the site kind, "head" or "other"


@dataclass(frozen=True)
class MiniRow:
    key: str  # BEFORE, AFTER or the layer's number as text
    label: str
    cells: tuple[MiniCell, ...]


@dataclass(frozen=True)
class Miniature:
    rows: tuple[MiniRow, ...]  # in data-flow order: before, layer 0 .. n-1, after
    block_rows: dict[str, str]  # a block's module path -> the row it is drawn in (for tensors at no site)

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(cell.key for row in self.rows for cell in row.cells)


def other(row: str) -> str:
    return f"{row}:other"


def miniature(base: FrozenBase) -> Miniature:
    sites = base.site_index().sites
    before = [s for s in sites if s.layer is None and s.kind in BEFORE_KINDS]
    after = [s for s in sites if s.layer is None and s.kind not in BEFORE_KINDS]
    layers = sorted({s.layer for s in sites if s.layer is not None} | set(range(base.num_layers)))
    rows = [MiniRow(BEFORE, "before the layers", (*_cells(before), MiniCell(other(BEFORE), "embeddings", "other")))]
    for layer in layers:
        own = [s for s in sites if s.layer == layer]
        rows.append(MiniRow(str(layer), f"layer {layer}",
                            (*_cells(own), MiniCell(other(str(layer)), f"layer {layer}: other tensors", "other"))))
    rows.append(MiniRow(AFTER, "after the layers", (*_cells(after), MiniCell(other(AFTER), "final norm, pooling",
                                                                               "other"), MiniCell(HEAD, "the head",
                                                                                                  HEAD))))
    return Miniature(tuple(rows), _block_rows(base.blocks()))


def _cells(sites: Iterable) -> tuple[MiniCell, ...]:
    return tuple(MiniCell(s.id, f"{s.label} ({s.id})", s.kind) for s in sites)


def _block_rows(blocks: list[Block]) -> dict[str, str]:
    """Each block's module path -> its row: its layer's, else before or after the first layer in drawing order."""
    flat: list[Block] = []

    def walk(block: Block) -> None:
        flat.append(block)
        for child in block.children:
            walk(child)

    for block in blocks:
        walk(block)
    first = next((i for i, b in enumerate(flat) if b.layer is not None), len(flat))
    rows: dict[str, str] = {}
    for i, block in enumerate(flat):
        if block.module_path:
            row = str(block.layer) if block.layer is not None else BEFORE if i < first else AFTER
            rows.setdefault(block.module_path, row)
    return rows


def lit_cells(shape: Miniature, base: FrozenBase, census: Census, site_ids: Iterable[str] = ()) -> frozenset[str]:
    """The cells a method lights: the sites it attaches to, and the cell of every trainable tensor (a site's, the
    head's, or the "other" cell of the row its module is drawn in). Method modules outside the base (a prefix
    tuning MLP) sit at the sites it selected."""
    keys = shape.keys
    lit = {s for s in site_ids if s in keys}
    paths = PathIndex((row, path) for path, row in shape.block_rows.items())
    for row in census.rows:
        if not row.trainable:
            continue
        if row.owner == "head":
            lit.add(HEAD)
        elif row.site in keys:
            lit.add(row.site)
        elif row.name.startswith("base."):
            module = row.name.removeprefix("base.").rsplit(".", 1)[0]
            drawn = paths.lookup(module)
            lit.add(other(drawn if drawn is not None else BEFORE if "embed" in module else AFTER))
    return frozenset(lit)
