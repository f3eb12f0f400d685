"""Builds the diagram from blocks() + sites() + census: generic, so a new base gets its picture free.

Layout: stages flow top to bottom (input, embeddings, each layer, pooling, head) and each stage's
inside reads left to right (attention, add + norm, feed-forward, add + norm). Repeated layers line up
vertically, so the repetition is visible, and a 16:10 screen holds two expanded layers at a
readable size; deeper models collapse their layers into one expandable box, and a large base (an 80-layer
Llama) expands a few layers at a time (View ▸ Show layers…), the others staying collapsed above and below.
Which layers show is view state (core/view.py), so a lesson can restore it.

Tooltips are made when first hovered, not when the diagram is built: each costs a count of what a click
would do, and a 70B base has a thousand insertion points.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape

from PySide6.QtCore import QPointF, QRectF, Signal
from PySide6.QtGui import QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsScene, QGraphicsSimpleTextItem

from ...core.bases.sites import (
    ACTIVATION,
    GATED_PROMPT,
    KV_PREFIX,
    LINEAR,
    LINEAR_INPUT,
    NORM,
    PROMPT,
    TOKEN_ROWS,
    Block,
    PathIndex,
    Site,
)
from ...core.model.census import CensusRow
from ...core.view import LARGE_BASE_LAYERS, SHOWN_LAYERS, ViewState, layers_collapsed, shown_range
from ..window import theme
from ..window.theme import lock_html
from .items import BlockItem, SiteItem, TokenRowItem, arrow
from .style import Style

ROOT = "<root>"
HEAD = "head"
LAYERS = "layers"  # key of the collapsed layer group (every layer); a partly shown stack has LAYERS:first-last
SITE_PREFIX = "site:"


@dataclass
class DiagramInfo:
    """Everything the scene draws; plain data, built by the window from the controller."""

    blocks: list[Block]
    sites: list[Site]
    rows: list[CensusRow]
    selected: set[str]  # site ids the current method uses
    site_method: Callable[[Site], str]  # the method a click on this site would choose
    site_glyph: Callable[[Site], str] = lambda site: "+"  # that method's glyph
    site_tip: Callable[[Site, str], str] = lambda site, state: site.label  # (site, state) -> HTML
    seq_len: int = 8
    prompt_tokens: int = 0
    prefix_tokens: int = 0
    frozen_prefix_tokens: int = 0  # the first prefix keys kept fixed (Cartridges' attention sink)
    hidden: int = 32
    num_labels: int = 2
    label_names: tuple[str, ...] = ()
    head_trainable: bool = True
    method: str = "lora"
    locked: bool = False
    input_words: tuple[str, ...] = ()  # the sentence the input row shows (its tokens): L = len(input_words)
    extra: dict = field(default_factory=dict)


def site_key(site_id: str) -> str:
    return SITE_PREFIX + site_id


def group_key(run: tuple[int, int], layer_count: int) -> str:
    """The item key of a collapsed run of layers: LAYERS for all of them."""
    return LAYERS if run == (0, layer_count - 1) else f"{LAYERS}:{run[0]}-{run[1]}"


class DiagramScene(QGraphicsScene):
    site_clicked = Signal(str)
    block_clicked = Signal(str)
    rebuilt = Signal()  # the layout changed (new model, collapse, presentation): views may re-fit

    def __init__(self, view_state: ViewState | None = None) -> None:
        super().__init__()
        self.view_state = view_state or ViewState()
        self.presentation = False
        self.info: DiagramInfo | None = None
        self.block_items: dict[str, BlockItem] = {}
        self.site_items: dict[str, SiteItem] = {}
        self.row_key: dict[str, str] = {}  # census row name -> item key
        self._marked: set[str] = set()
        self.key_rows: dict[str, TokenRowItem] = {}
        self.key_weights: dict[int, list[float]] = {}  # layer -> each key's attention weight (from the lens)
        self.token_row: TokenRowItem | None = None
        self.show_grads = True
        self.tip_extra: Callable[[str], str] = lambda _gains_name: ""  # IA3's live picture for a hovered strip
        self.layer_groups: list[tuple[int, int]] = []  # collapsed runs of layers, as drawn

    # ---- public -------------------------------------------------------------------------------
    @property
    def collapsed(self) -> bool | None:
        """The user's (or a lesson's) choice, None for automatic: view state, kept by core/view.py."""
        return self.view_state.collapsed

    @collapsed.setter
    def collapsed(self, value: bool | None) -> None:
        self.view_state.set(collapsed=value, shown_layers=None)

    def build(self, info: DiagramInfo) -> None:
        self.info = info
        self.clear()
        self.block_items.clear()
        self.site_items.clear()
        self.row_key.clear()
        self.key_rows: dict[str, TokenRowItem] = {}
        self.token_row: TokenRowItem | None = None
        self.st = Style(self.presentation)
        self._index(info)
        layout = _Layout(self, info)
        layout.run()
        self.setSceneRect(self.itemsBoundingRect().adjusted(-30, -30, 30, 30))
        for key in self._marked:
            self._mark(key, True)
        self.rebuilt.emit()

    def rebuild(self) -> None:
        if self.info is not None:
            self.build(self.info)

    def show_key_weights(self, by_layer: dict[int, list[float]]) -> None:
        """Shade prefix tuning's key rows by the attention each key gets ({}: no shading); kept across rebuilds
        until the model changes (the window clears it then)."""
        self.key_weights = dict(by_layer)
        for row in self.key_rows.values():
            row.set_weights(self.key_weights.get(row.layer) if row.layer is not None else None)

    def set_presentation(self, on: bool) -> None:
        self.presentation = on
        self.rebuild()

    def layer_count(self) -> int:
        return sum(1 for b in self.info.blocks if b.kind == "layer") if self.info is not None else 0

    def layers_collapsed(self) -> bool:
        """Every repeated layer drawn as one box (a projector collapses more than one: L expands them)."""
        if self.info is None:
            return bool(self.collapsed)
        view = self.view_state.view
        if view.presentation != self.presentation:  # a scene built without the window's view state
            view = type(view)(**{**view.__dict__, "presentation": self.presentation})
        return layers_collapsed(view, self.layer_count())

    def shown_layers(self) -> tuple[int, int] | None:
        """The layers drawn expanded (first, last), or None when every layer is (or none: collapsed)."""
        count = self.layer_count()
        if count < 2 or self.layers_collapsed():
            return None
        return shown_range(self.view_state.view, count)

    def shown_layers_text(self) -> str:
        shown = self.shown_layers()
        if shown is None:
            return "0" if self.layers_collapsed() or not self.layer_count() else f"0-{self.layer_count() - 1}"
        return str(shown[0]) if shown[0] == shown[1] else f"{shown[0]}-{shown[1]}"

    def hidden_layer_runs(self) -> list[tuple[int, int]]:
        """Runs of layers drawn as a collapsed box: all of them, or those outside the shown range."""
        count = self.layer_count()
        if count < 2:
            return []
        if self.layers_collapsed():
            return [(0, count - 1)]
        shown = self.shown_layers()
        if shown is None:
            return []
        runs = []
        if shown[0] > 0:
            runs.append((0, shown[0] - 1))
        if shown[1] < count - 1:
            runs.append((shown[1] + 1, count - 1))
        return runs

    def toggle_layers(self) -> None:
        self.view_state.set(collapsed=not self.layers_collapsed(), shown_layers=None)

    def open_group(self, first: int, last: int) -> None:
        """A collapsed run was clicked: a small stack expands whole; a large one shows the layers of the run
        next to those shown (or its first ones)."""
        count = self.layer_count()
        if count <= LARGE_BASE_LAYERS:
            self.view_state.set(collapsed=False, shown_layers=None)
            return
        shown = self.shown_layers()
        if shown is not None and last < shown[0]:  # above the shown layers: the ones just before them
            new = (max(first, last - SHOWN_LAYERS + 1), last)
        else:
            new = (first, min(last, first + SHOWN_LAYERS - 1))
        self.view_state.set(collapsed=False, shown_layers=new)

    def set_gradient_bars(self, visible: bool) -> None:
        """A lesson may hide the live gradient bars (its "gradients" panel)."""
        self.show_grads = visible
        if not visible:
            for item in (*self.block_items.values(), *self.site_items.values()):
                item.set_grad(None, 1.0)

    def helpEvent(self, event) -> None:  # noqa: N802 - Qt override: tooltips are made on first hover
        for item in self.items(event.scenePos()):
            if isinstance(item, (SiteItem, BlockItem)):
                item.toolTip()  # fills a lazy tooltip before Qt reads it
                break
        super().helpEvent(event)

    def update_grads(self, grads: dict[str, float]) -> None:
        """Live gradient norms: per item, the L2 norm over its trainable tensors."""
        if not self.show_grads:
            return
        squares: dict[str, float] = {}
        for name, norm in grads.items():
            key = self.row_key.get(name)
            if key is not None:
                squares[key] = squares.get(key, 0.0) + norm * norm
        values = {k: v ** 0.5 for k, v in squares.items()}
        vmax = max(values.values(), default=1.0)
        for key, value in values.items():
            item = self.item_for(key)
            if item is not None:
                item.set_grad(value, vmax)

    def update_gains(self, gains: dict[str, list[float]]) -> None:
        """IA3's gain vectors (parameter name -> values) onto their insertion points' heat strips."""
        for name, values in gains.items():
            key = self.row_key.get(name)
            item = self.item_for(key) if key is not None else None
            if item is not None and hasattr(item, "set_gains"):
                item.set_gains(values)

    @property
    def marked(self) -> set[str]:
        return set(self._marked)

    def mark(self, keys: set[str]) -> None:
        """Outline the items of these keys (the table's selection)."""
        for key in self._marked - keys:
            self._mark(key, False)
        for key in keys - self._marked:
            self._mark(key, True)
        self._marked = set(keys)

    def item_for(self, key: str):
        """Keys: a block id, or site_key(site id) for an insertion point."""
        if key.startswith(SITE_PREFIX):
            return self.site_items.get(key[len(SITE_PREFIX):])
        return self.block_items.get(key)

    def _mark(self, key: str, on: bool) -> None:
        item = self.item_for(key)
        if item is not None:
            item.set_marked(on)

    # ---- census -> items ------------------------------------------------------------------------
    def _index(self, info: DiagramInfo) -> None:
        self.all_blocks: dict[str, Block] = {}
        self.parent: dict[str, str] = {}

        def walk(block: Block, parent: str) -> None:
            self.all_blocks[block.id] = block
            self.parent[block.id] = parent
            for child in block.children:
                walk(child, block.id)

        for block in info.blocks:
            walk(block, ROOT)
        # Indexed once per build: a 70B base has ~1,000 blocks, sites and tensors to match to each other.
        self.block_paths = PathIndex((b.id, b.module_path) for b in self.all_blocks.values())
        self.container_paths = PathIndex((b.id, b.module_path) for b in self.all_blocks.values() if b.children)
        self.sites_by_id = {s.id: s for s in info.sites}
        self.site_ids = set(self.sites_by_id)
        self.block_rows: dict[str, list[CensusRow]] = {}
        self.site_rows: dict[str, list[CensusRow]] = {}
        self.layer_groups = self.hidden_layer_runs()
        group_of = {layer: group_key(run, self.layer_count()) for run in self.layer_groups
                    for layer in range(run[0], run[1] + 1)}
        for row in info.rows:
            key = self._key_for_row(row)
            layer = self._layer_of(key) if key != HEAD and group_of else None
            if layer is not None and layer in group_of:
                key = group_of[layer]
            on_site = row.owner == "method" and key in self.site_ids
            self.row_key[row.name] = site_key(key) if on_site else key
            target = self.site_rows if on_site else self.block_rows
            target.setdefault(key, []).append(row)

    def _key_for_row(self, row: CensusRow) -> str:
        if row.owner == "head":
            return HEAD
        if row.owner == "method" and row.site in self.site_ids:
            return row.site
        path = row.name.removeprefix("base.").rsplit(".", 1)[0]
        best = self.block_paths.lookup(path)
        if best:
            return best
        return row.site if row.site in self.site_ids else path

    def _layer_of(self, key: str) -> int | None:
        key = key.removeprefix(SITE_PREFIX)
        block = self.all_blocks.get(key)
        if block is not None:
            while block is not None and block.kind != "layer":
                block = self.all_blocks.get(self.parent.get(block.id, ROOT))
            return block.layer if block is not None else None
        site = self.sites_by_id.get(key)
        return site.layer if site is not None else None

    def keys_for_rows(self, names: list[str]) -> set[str]:
        return {self.row_key[n] for n in names if n in self.row_key}

    def rows_for_key(self, key: str) -> list[str]:
        return [n for n, k in self.row_key.items() if k == key]


class _Layout:
    """Places items in two passes: measure (sizes) then place (positions + items)."""

    def __init__(self, scene: DiagramScene, info: DiagramInfo) -> None:
        self.scene, self.info, self.st = scene, info, scene.st
        self.anchor: dict[str, tuple[str, str, str | None]] = {}  # site id -> (how, where, after)
        self._anchor_sites()

    # ---- where each site goes ---------------------------------------------------------------
    def _deepest_parent(self, path: str) -> str:
        """The innermost container block around the module at `path` (ROOT when none)."""
        return self.scene.container_paths.lookup(path, strict=True) or ROOT

    def _children(self, parent: str) -> tuple[Block, ...]:
        return tuple(self.info.blocks) if parent == ROOT else self.scene.all_blocks[parent].children

    def _child_holding(self, parent: str, block_id: str) -> str | None:
        child_ids = {c.id for c in self._children(parent)}
        while block_id != ROOT and block_id not in child_ids:
            block_id = self.scene.parent.get(block_id, ROOT)
        return block_id if block_id in child_ids else None

    def _anchor_sites(self) -> None:
        by_path = {b.module_path: b for b in self.scene.all_blocks.values() if b.module_path}
        placed: list[tuple[Site, str]] = []  # (site, the block it is drawn on/after)
        for site in self.info.sites:
            if site.kind == PROMPT:
                first = next((b for b in self.info.blocks if b.kind == "input"), self.info.blocks[0])
                self.anchor[site.id] = ("prompt", first.id, None)
                placed.append((site, first.id))
                continue
            if site.kind in (LINEAR, LINEAR_INPUT, NORM, TOKEN_ROWS) and site.module_path in by_path:
                self.anchor[site.id] = ("corner", by_path[site.module_path].id, None)
                placed.append((site, by_path[site.module_path].id))
                continue
            parent = self._deepest_parent(site.module_path) if site.module_path else ROOT
            if site.kind == ACTIVATION:
                act = next((c for c in self._children(parent) if c.kind == "activation"), None)
                if act is not None:
                    self.anchor[site.id] = ("corner", act.id, None)
                    placed.append((site, act.id))
                    continue
            if site.kind in (KV_PREFIX, GATED_PROMPT) and parent != ROOT \
                    and self.scene.all_blocks[parent].kind == "attention":
                self.anchor[site.id] = ("kv", parent, None)
                placed.append((site, parent))
                continue
            after = None
            for _, block_id in reversed(placed):
                after = self._child_holding(parent, block_id)
                if after is not None:
                    break
            self.anchor[site.id] = ("after", parent, after)
            placed.append((site, after or parent))
        self.anchored: dict[tuple[str, str], list[Site]] = {}  # (how, where) -> its sites, in base order
        for site in self.info.sites:
            how, where, _after = self.anchor[site.id]
            self.anchored.setdefault((how, where), []).append(site)

    def _sites(self, how: str, where: str, after: str | None = "*") -> list[Site]:
        anchored = self.anchored.get((how, where), [])
        return anchored if after == "*" else [s for s in anchored if self.anchor[s.id][2] == after]

    # ---- items ----------------------------------------------------------------------------
    def state_of(self, site: Site) -> str:
        if site.id in self.info.selected:
            return "selected"
        return "available" if site.available_for(self.info.site_method(site)) else "unavailable"

    def site_item(self, site: Site, centre: QPointF) -> SiteItem:
        state = self.state_of(site)
        item = SiteItem(site.id, self.info.site_glyph(site), state, centre, self.st, self.scene.site_clicked.emit)
        info, scene = self.info, self.scene

        def tip() -> str:  # made on the first hover (a count per insertion point): see the module docstring
            gains = [r.name for r in scene.site_rows.get(site.id, []) if r.name.endswith(".ia3_scale")]
            return info.site_tip(site, state) + "".join(scene.tip_extra(name) for name in gains)

        item.set_tip_maker(tip)
        self.scene.addItem(item)
        self.scene.site_items[site.id] = item
        return item

    def role(self, key: str) -> str:
        rows = self.scene.block_rows.get(key, [])
        if key == HEAD:
            return "head" if self.info.head_trainable else "head-frozen"
        if rows and all(r.trainable for r in rows):
            return "trainable"
        if any(r.trainable for r in rows):  # e.g. BitFit: the biases train, the weights stay frozen
            return "partial"
        return "frozen" if rows else "plain"

    def subtitle(self, key: str) -> str:
        rows = self.scene.block_rows.get(key, [])
        if rows and self.role(key) == "partial":
            trained = [r for r in rows if r.trainable]
            return "trains: " + " · ".join(f"{r.name.rsplit('.', 1)[-1]} {r.numel:,}" for r in trained[:2])
        shapes = ["×".join(map(str, r.shape)) for r in rows if r.dtype != "nf4"]
        if not shapes:
            shapes = ["×".join(map(str, r.shape)) for r in rows]
        text = " · ".join(shapes[:2]) + (" …" if len(shapes) > 2 else "")
        return text

    def tooltip(self, key: str, block: Block | None, title: str) -> str:
        rows = self.scene.block_rows.get(key, [])
        parts = [f"<b>{escape(title)}</b>"]
        if block is not None and block.note:
            parts.append(escape(block.note))
        if rows:
            lines = "".join(
                f"<tr><td>{escape(r.name)}</td><td>{'×'.join(map(str, r.shape))}</td><td>{r.numel:,}</td>"
                f"<td>{r.dtype}</td><td>{'trainable' if r.trainable else lock_html(12) + ' frozen'}</td></tr>"
                for r in rows[:12])
            parts.append(f"<table cellspacing=4>{lines}</table>")
            if not any(r.trainable for r in rows):
                parts.append("Frozen: no gradient (exactly 0), never changes during training.")
        return "<br>".join(parts)

    def block_item(self, key: str, title: str, subtitle: str, role: str, rect: QRectF, block: Block | None,
                   chevron: str = "", on_chevron: Callable[[], None] | None = None, tip_suffix: str = "") -> BlockItem:
        quant = any(r.dtype == "nf4" for r in self.scene.block_rows.get(key, []))
        item = BlockItem(key, title, subtitle, role, rect, self.st, self.scene.block_clicked.emit, quant,
                         chevron, on_chevron)
        item.set_tip_maker(lambda: self.tooltip(key, block, title) + tip_suffix)
        self.scene.addItem(item)
        self.scene.block_items[key] = item
        return item

    def text(self, text: str, pos: QPointF, small: bool = True) -> QGraphicsSimpleTextItem:
        item = QGraphicsSimpleTextItem(text)
        item.setFont(self.st.small_font if small else self.st.title_font)
        item.setBrush(theme.FROZEN_TEXT)
        item.setPos(pos)
        item.setZValue(2)
        self.scene.addItem(item)
        return item

    # ---- measuring + placing ---------------------------------------------------------------
    def leaf_size(self, title: str, subtitle: str) -> tuple[float, float]:
        st = self.st
        lines = title.split("\n")
        lock = st.small_fm.height()  # room for the padlock on both sides keeps the title centred
        w = max(*(st.text_width(line) for line in lines), st.text_width(subtitle, small=True)) + st.pad + 2 * lock
        h = st.title_fm.height() * len(lines) + (st.small_fm.height() + 2 if subtitle else 0) + st.pad * 0.9
        return max(w, 64 * st.scale), h

    def run(self) -> None:
        st, info = self.st, self.info
        stages: list[tuple[str, object]] = []
        layers = [b for b in info.blocks if b.kind == "layer"]
        runs = {first: (first, last) for first, last in self.scene.layer_groups}
        hidden = {layer for first, last in self.scene.layer_groups for layer in range(first, last + 1)}
        for block in info.blocks:
            if block.kind == "layer" and block.layer in hidden:
                if block.layer in runs:  # a collapsed run starts here: one box for all of it
                    first, last = runs[block.layer]
                    stages.append(("group", [b for b in layers if first <= b.layer <= last]))
                continue
            stages.append(("block", block))
        stages.append(("head", None))
        measured = [self.measure_stage(kind, obj) for kind, obj in stages]
        width = max(w for w, _ in measured)
        y = 0.0
        prev_bottom: QPointF | None = None
        for (kind, obj), (w, h) in zip(stages, measured, strict=True):
            key = obj.id if kind == "block" else kind
            between = self._sites("after", ROOT, key) if kind == "block" else []
            top = QPointF(width / 2, y)
            if prev_bottom is not None:
                self.scene.addItem(arrow(prev_bottom, top, st))
            self.place_stage(kind, obj, QPointF((width - w) / 2, y), w, h)
            y += h
            prev_bottom = QPointF(width / 2, y)
            label = self.shape_after(kind, obj)
            gap = st.vgap + (2 * st.site_r + st.vgap * 0.6 if between else 0)
            if label:  # right of the arrow, and right of any insertion points sitting on it
                clear = (len(between) - 1) / 2 * 3 * st.site_r + st.site_r if between else 0.0
                self.text(label, QPointF(width / 2 + clear + st.pad, y + gap / 2 - st.small_fm.height() / 2))
            for i, site in enumerate(between):
                self.site_item(site, QPointF(width / 2 - (i - (len(between) - 1) / 2) * 3 * st.site_r,
                                             y + gap / 2))
                self.text(site.name, QPointF(width / 2 - 3 * st.site_r - st.text_width(site.name, True),
                                             y + gap / 2 - st.small_fm.height() / 2))
            y += gap
        # leftover: sites anchored after nothing at the root (drawn before the first stage)
        for i, site in enumerate(self._sites("after", ROOT, None)):
            self.site_item(site, QPointF(width / 2 + (i + 1) * 3 * st.site_r, -st.vgap / 2))

    def shape_after(self, kind: str, obj) -> str:
        info = self.info
        length = f"L+{info.prompt_tokens}" if info.prompt_tokens else "L"
        if kind == "head":
            return ""
        if kind == "group":
            return f"[B, {length}, {info.hidden}]"
        block: Block = obj
        if block.kind == "input":
            return "[B, L] token ids"
        if block.kind == "pool" or self._after_pool(block):
            return f"[B, {info.hidden}]"
        return f"[B, {length}, {info.hidden}]"

    def _after_pool(self, block: Block) -> bool:
        ids = [b.id for b in self.info.blocks]
        pools = [i for i, b in enumerate(self.info.blocks) if b.kind == "pool"]
        return bool(pools) and ids.index(block.id) > pools[0]

    def measure_stage(self, kind: str, obj) -> tuple[float, float]:
        if kind == "head":
            return self.leaf_size(*self.head_text())
        if kind == "group":
            return self.leaf_size(*self.group_text(obj))
        block: Block = obj
        if block.kind == "input":
            return self.input_size(block)
        return self.measure(block)

    def head_text(self) -> tuple[str, str]:
        info = self.info
        if "head" in info.extra:  # the next-token task: the base's own LM head (gui/diagram/describe.py)
            return info.extra["head"]
        names = ", ".join(info.label_names[:5]) + (" …" if len(info.label_names) > 5 else "")
        return (f"classification head {info.hidden}→{info.num_labels}",
                f"{info.num_labels}×{info.hidden} + {info.num_labels} → softmax over {names}")

    def group_text(self, layers: list[Block]) -> tuple[str, str]:
        """The collapsed layers: a header, then one line per run of layers with the same chosen points, so
        a collapsed model still says which layers train and where (e.g. "layers 0–3: q, v")."""
        first, last = layers[0].layer, layers[-1].layer
        inside = [s for s in self.info.sites if s.layer is not None and first <= s.layer <= last
                  and s.id in self.info.selected]
        lines = [f"layers {first}–{last} (×{len(layers)})  ▸"]
        lines += layer_runs([b.layer for b in layers], inside)
        return "\n".join(lines), f"{len(inside)} trainable insertion points inside · click to show"

    def input_size(self, block: Block) -> tuple[float, float]:
        st = self.st
        tokens = self.token_row(QPointF())
        title = self.input_title(block)
        w = max(st.text_width(title), tokens.width() + 4 * st.site_r) + 2 * st.pad
        return w, st.title_fm.height() + tokens.height() + st.pad * 2

    def token_row(self, origin: QPointF) -> TokenRowItem:
        return TokenRowItem(self.info.seq_len, self.info.prompt_tokens, origin, self.st, self.info.input_words)

    def input_title(self, block: Block) -> str:
        n = self.info.prompt_tokens
        L = self.info.seq_len
        return f"{block.label}: L = {L}" + (f" → L + n = {L + n}" if n else "")

    def place_stage(self, kind: str, obj, pos: QPointF, w: float, h: float) -> None:
        st = self.st
        rect = QRectF(pos.x(), pos.y(), w, h)
        if kind == "head":
            title, sub = self.head_text()
            role = "head" if self.info.head_trainable else "head-frozen"
            self.block_item(HEAD, title, sub, role, rect, None)
            return
        if kind == "group":
            title, sub = self.group_text(obj)
            first, last = obj[0].layer, obj[-1].layer
            role = "trainable" if any(s.layer is not None and first <= s.layer <= last and s.id in self.info.selected
                                      for s in self.info.sites) else "frozen"
            key = group_key((first, last), self.scene.layer_count())
            item = self.block_item(key, title, sub, role, rect, None)
            item.on_click = lambda _key, a=first, b=last: self.scene.open_group(a, b)
            count = self.scene.layer_count()
            more = "" if count <= LARGE_BASE_LAYERS else \
                f" A {count}-layer base shows {SHOWN_LAYERS} at a time: View ▸ Show layers… picks any."
            item.set_tip(f"Repeated layers {first}–{last}, collapsed. Click to draw them and reach their insertion "
                         f"points.{more}")
            return
        block: Block = obj
        if block.kind == "input":
            self.block_item(block.id, self.input_title(block), "", "plain", rect, block)
            item = self.scene.block_items[block.id]
            item.title = ""
            title = self.text(self.input_title(block), QPointF(pos.x() + st.pad, pos.y() + st.pad / 2), small=False)
            title.setBrush(theme.TEXT)
            left = pos.x() + st.pad + 3 * st.site_r
            row = self.token_row(QPointF(left, pos.y() + st.title_fm.height() + st.pad))
            row.setToolTip("The input sentence as tokens" + (": the orange slots are the trainable soft prompts, "
                                                            "prepended (L → L + n)" if self.info.prompt_tokens else ""))
            self.scene.addItem(row)
            self.scene.token_row = row
            for site in self._sites("prompt", block.id):
                self.site_item(site, QPointF(pos.x() + st.pad + st.site_r, row.pos().y() + row.height() / 2))
            return
        self.place(block, pos, (w, h))

    def measure(self, block: Block) -> tuple[float, float]:
        st = self.st
        if not block.children:
            return self.leaf_size(wrap(block.label), self.subtitle(block.id))
        elements = self.elements(block)
        widths, heights = [], []
        for element in elements:
            w, h = self.measure_element(element)
            widths.append(w)
            heights.append(h)
        header = st.title_fm.height() + st.pad * 0.6 + st.site_r
        arcs = self.arc_space(block)
        w = 2 * st.pad + sum(widths) + st.hgap * (len(elements) - 1)
        keys = self.key_row(block, QPointF())
        w = max(w, st.text_width(block.label) + st.text_width(self.container_sub(block), True) + 5 * st.pad
                + (keys.width() + st.pad if keys is not None else 0))
        return w, header + arcs + max(heights) + st.pad * 1.2

    def arc_space(self, block: Block) -> float:
        has = any(c.residual for c in block.children)
        return 14 * self.st.scale if has else 0.0

    def key_row(self, block: Block, origin: QPointF) -> TokenRowItem | None:
        """Prefix tuning's picture: this attention's keys, L grey then n orange prefix keys (L -> L + n)."""
        if block.kind != "attention" or not self.info.prefix_tokens or not any(
                s.id in self.info.selected for s in self._sites("kv", block.id)):
            return None
        row = TokenRowItem(self.info.seq_len, self.info.prefix_tokens, origin, self.st, scale=0.75,
                           frozen=self.info.frozen_prefix_tokens)
        row.layer = block.layer
        row.set_weights(self.scene.key_weights.get(block.layer) if block.layer is not None else None)
        return row

    def container_sub(self, block: Block) -> str:
        if block.kind == "attention" and any(
                s.id in self.info.selected for s in self._sites("kv", block.id)) and self.info.prefix_tokens:
            return f"keys L → L+{self.info.prefix_tokens}"
        if block.kind == "layer":
            return ""
        return ""

    def elements(self, block: Block) -> list[tuple[str, object]]:
        """('block', Block) | ('column', [Block]) | ('site', Site), in data-flow order."""
        items: list[tuple[str, object]] = [("site", s) for s in self._sites("after", block.id, None)]
        children = list(block.children)
        if block.kind == "attention" and len(children) > 2:
            items.append(("column", children[:-1]))
            items.extend(("site", s) for s in self._sites("kv", block.id))
            for child in children[:-1]:
                items.extend(("site", s) for s in self._sites("after", block.id, child.id))
            children = children[-1:]
        for child in children:
            items.append(("block", child))
            items.extend(("site", s) for s in self._sites("after", block.id, child.id))
        return items

    def measure_element(self, element: tuple[str, object]) -> tuple[float, float]:
        kind, obj = element
        st = self.st
        if kind == "site":
            return 2 * st.site_r, 2 * st.site_r
        if kind == "column":
            sizes = [self.measure(b) for b in obj]
            return max(w for w, _ in sizes), sum(h for _, h in sizes) + (len(sizes) - 1) * (st.site_r * 0.8 + 3)
        return self.measure(obj)

    def place(self, block: Block, pos: QPointF, size: tuple[float, float]) -> None:
        st = self.st
        w, h = size
        rect = QRectF(pos.x(), pos.y(), w, h)
        if not block.children:
            self.block_item(block.id, wrap(block.label), self.subtitle(block.id), self.role(block.id), rect, block)
            self.corner_sites(block.id, rect)
            return
        chevron = "▾" if block.kind == "layer" and self.scene.layer_count() > 1 else ""
        self.block_item(block.id, block.label, self.container_sub(block), "container", rect, block,
                        chevron, self.scene.toggle_layers if chevron else None,
                        "<br>Click ▾ to collapse the repeated layers." if chevron else "")
        keys_left = pos.x() + st.pad * 3 + st.text_width(block.label) + st.text_width(self.container_sub(block), True)
        keys = self.key_row(block, QPointF(keys_left, pos.y() + st.pad / 3 + st.title_fm.height() * 0.15))
        if keys is not None:
            shaded = ("; dark bars: the attention each key gets from the sentence's tokens (the Lens)"
                      if keys.weights else "")
            frozen = self.info.frozen_prefix_tokens
            prefix = (f"{self.info.prefix_tokens} prefix keys ({frozen} frozen, outlined: an attention sink; the "
                      f"rest trained, orange)" if frozen else f"{self.info.prefix_tokens} trainable prefix keys "
                      "(orange)")
            keys.setToolTip(f"Keys this attention looks at: {prefix} before the sentence's L = {self.info.seq_len} "
                            "keys (grey); values grow the same way" + shaded)
            self.scene.addItem(keys)
            self.scene.key_rows[block.id] = keys
        header = st.title_fm.height() + st.pad * 0.6 + st.site_r
        arcs = self.arc_space(block)
        elements = self.elements(block)
        sizes = [self.measure_element(e) for e in elements]
        row_top = pos.y() + header + arcs
        row_h = max(sh for _, sh in sizes)
        cy = row_top + row_h / 2
        x = pos.x() + st.pad
        prev_right: float | None = None
        segment_start = pos.x() + st.pad / 2
        for (kind, obj), (ew, eh) in zip(elements, sizes, strict=True):
            if prev_right is not None:
                self.scene.addItem(arrow(QPointF(prev_right, cy), QPointF(x, cy), st))
            top = cy - eh / 2
            if kind == "site":
                self.site_item(obj, QPointF(x + st.site_r, cy))
                self.text(obj.name, QPointF(x + st.site_r - st.text_width(obj.name, True) / 2,
                                            cy + st.site_r * 1.75))  # below the live gradient bar
            elif kind == "column":
                y = top
                for child in obj:
                    cw, ch = self.measure(child)
                    self.place(child, QPointF(x, y), (ew, ch))
                    y += ch + st.site_r * 0.8 + 3
            else:
                self.place(obj, QPointF(x, top), (ew, eh))
                if obj.residual:
                    self.residual(segment_start, x + ew / 2, row_top, top, row_top - arcs + 2)
                    segment_start = x + ew + st.hgap / 2
            prev_right = x + ew
            x += ew + st.hgap

    def residual(self, x0: float, x1: float, cy: float, end_y: float, high: float) -> None:
        st = self.st
        path = QPainterPath(QPointF(x0, cy))
        path.lineTo(QPointF(x0, high + 6 * st.scale))
        path.quadTo(QPointF(x0, high), QPointF(x0 + 6 * st.scale, high))
        path.lineTo(QPointF(x1 - 6 * st.scale, high))
        path.quadTo(QPointF(x1, high), QPointF(x1, high + 6 * st.scale))
        path.lineTo(QPointF(x1, end_y))
        item = QGraphicsPathItem(path)
        pen = QPen(theme.ARROW, st.pen)
        pen.setStyle(theme_dash())
        item.setPen(pen)
        item.setZValue(0.5)
        item.setToolTip("Residual connection: the sublayer's result is added back to its input.")
        self.scene.addItem(item)

    def corner_sites(self, block_id: str, rect: QRectF) -> None:
        for i, site in enumerate(self._sites("corner", block_id)):
            self.site_item(site, QPointF(rect.right() - self.st.site_r * (0.2 + 2.4 * i), rect.top()))


def wrap(title: str, width: int = 13) -> str:
    """Long leaf titles on two lines (narrower boxes, a larger fitted diagram)."""
    if len(title) <= width or " " not in title:
        return title
    middle = len(title) / 2
    cut = min((i for i, ch in enumerate(title) if ch == " "), key=lambda i: abs(i - middle))
    return title[:cut] + "\n" + title[cut + 1:]


def theme_dash():
    from PySide6.QtCore import Qt

    return Qt.PenStyle.DashLine


MAX_RUN_LINES = 6  # a collapsed 80-layer model stays a few lines tall on a projector


def layer_runs(layer_ids: list[int], chosen: list[Site]) -> list[str]:
    """One line per run of consecutive layers whose chosen insertion points are the same."""
    names = {layer: tuple(dict.fromkeys(s.name for s in chosen if s.layer == layer)) for layer in layer_ids}
    runs: list[tuple[int, int, tuple[str, ...]]] = []
    for layer in layer_ids:
        if runs and runs[-1][2] == names[layer] and runs[-1][1] == layer - 1:
            runs[-1] = (runs[-1][0], layer, names[layer])
        else:
            runs.append((layer, layer, names[layer]))
    lines = [f"{f'layer {a}' if a == b else f'layers {a}–{b}'}: {', '.join(n) if n else 'frozen'}" for a, b, n in runs]
    if len(lines) > MAX_RUN_LINES:
        lines = lines[: MAX_RUN_LINES - 1] + [f"… and {len(lines) - MAX_RUN_LINES + 1} more runs (expand to see)"]
    return lines
