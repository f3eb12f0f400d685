"""The Family map dock (View > Family map): every registered method on the current base as a small multiple,
grouped as the seed's map groups them and sortable by any figure (core/runs/family_map.py). A click on a tile,
or Enter on the focused one, opens that method in the main diagram as a normal, undoable method switch.

The map is computed on a worker thread as a visible job (an 80-layer meta-device base takes seconds), from a
base built apart from the studio's model: it never changes the setup or its history. It is computed when the
dock is first shown and again when the base, its options, the seed or the dataset change while it is open;
a method switch only moves the highlight.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...core.methods import METHODS
from ...core.runs.family_map import (
    FIGURES,
    LATENCY_REPEATS,
    MapTile,
    grouped,
    latency_batch,
    map_base,
    map_tiles,
    sort_tiles,
)
from ...core.runs.family_miniature import Miniature, miniature
from ..jobs.background import BackgroundJob
from ..jobs.worker import JobError
from ..panels.family_tile import FamilyTile, TileMetrics
from ..plain import plain_label, set_plain
from ..window.controller import Controller

MAP_OWNER = "family-map"
SPACING = 8


class MapCanvas(QWidget):
    """Group headers and tiles laid out in rows that fill the width (re-flowed on resize)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.sections: list[tuple[QLabel, list[FamilyTile]]] = []
        self.metrics = TileMetrics()

    def set_sections(self, sections: list[tuple[str, list[FamilyTile]]], metrics: TileMetrics) -> None:
        kept = {id(tile) for _, tiles in sections for tile in tiles}
        for header, tiles in self.sections:
            header.deleteLater()
            for tile in tiles:
                if id(tile) not in kept:
                    tile.deleteLater()
        self.metrics = metrics
        self.sections = []
        for title, tiles in sections:
            header = plain_label(f"{title} · {len(tiles)}", self)
            header.setStyleSheet(f"font-weight: bold; font-size: {metrics.font(bold=True).pointSizeF():g}pt;")
            for tile in tiles:
                tile.setParent(self)
                tile.set_metrics(metrics)
                tile.show()
            header.show()
            self.sections.append((header, tiles))
        self.relayout()

    def tiles(self) -> list[FamilyTile]:
        return [tile for _, tiles in self.sections for tile in tiles]

    def relayout(self) -> None:
        """Rows of tiles; a group that fits in what is left of a row continues it (its header above its first
        tile), a larger one starts a new row and wraps."""
        size = self.metrics.size
        columns = max(1, (max(self.width(), 1) - SPACING) // (size.width() + SPACING))
        row = column = 0
        headers: list[tuple[QLabel, int, int]] = []
        placed: list[tuple[FamilyTile, int, int]] = []
        for header, tiles in self.sections:
            if column and column + len(tiles) > columns:
                row, column = row + 1, 0
            headers.append((header, row, column))
            for tile in tiles:
                if column >= columns:
                    row, column = row + 1, 0
                placed.append((tile, row, column))
                column += 1
        headed = {r for _, r, _ in headers}
        header_h = max((h.sizeHint().height() for h, _, _ in headers), default=0) + 2
        tops, y = [], SPACING // 2
        for r in range(row + 1):
            tops.append(y)
            y += size.height() + SPACING + (header_h if r in headed else 0)
        for header, r, c in headers:
            header.adjustSize()
            header.move(SPACING + c * (size.width() + SPACING), tops[r])
        for tile, r, c in placed:
            tile.move(SPACING + c * (size.width() + SPACING), tops[r] + (header_h if r in headed else 0))
        self.setMinimumHeight(y)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self.relayout()


class FamilyMapPanel(QWidget):
    method_chosen = Signal(str)  # a tile was clicked or entered: open that method in the diagram
    finished = Signal()  # a map was computed (or ended early)

    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.shape: Miniature | None = None
        self.batch = 0
        self.map: list[MapTile] = []
        self._key: tuple | None = None  # what the shown (or computing) map was made for
        self._again = False  # the setup changed while a map was computing: compute again when it ends
        self.job = BackgroundJob(self, controller.jobs, MAP_OWNER)
        self.job.item.connect(self._arrived)
        self.job.done.connect(self._done)
        self.sort_box = QComboBox()
        for figure in FIGURES:
            self.sort_box.addItem(figure.label, figure.key)
        self.sort_box.setToolTip("Order the tiles of each group by this figure (a method that does not apply, or a "
                                 "figure not measured, comes last)")
        self.sort_box.currentIndexChanged.connect(lambda _i: self.show_tiles())
        self.direction = QToolButton()
        self.direction.setCheckable(True)
        self.direction.setText("↑ smallest first")
        self.direction.setToolTip("Smallest first, or largest first")
        self.direction.toggled.connect(self._direction_changed)
        self.again_button = QPushButton("Measure again")
        self.again_button.setToolTip("Compute the map again (the latencies are timed anew)")
        self.again_button.clicked.connect(lambda: self.compute(force=True))
        self.status = plain_label("")  # quotes base names
        self.status.setWordWrap(True)
        self.canvas = MapCanvas()
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.scroll.setWidget(self.canvas)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Sort by"))
        bar.addWidget(self.sort_box)
        bar.addWidget(self.direction)
        bar.addWidget(self.again_button)
        bar.addWidget(self.status, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addWidget(self.scroll, 1)
        controller.changed.connect(self._setup_changed)
        controller.view.on_change(lambda changed: self.show_tiles() if "presentation" in changed else None)

    # ---- computing ----------------------------------------------------------------------------------
    def setup_key(self) -> tuple:
        setup = self.controller.setup
        return (setup.base, repr(sorted(setup.base_options.items())), setup.seed, self.controller.dataset.name,
                tuple(METHODS))

    @property
    def running(self) -> bool:
        return self.job.running

    @property
    def ready(self) -> bool:
        """The map of the current setup is complete (nothing computing, nothing stale)."""
        return not self.job.running and not self._again and self._key == self.setup_key() and \
            len(self.map) == len(METHODS)

    def compute(self, force: bool = False) -> bool:
        """Start computing the map of the current base off the GUI thread; False when it is already current or
        one is computing (then it computes again when that one ends)."""
        key = self.setup_key()
        if self.job.running:
            if key != self._key or force:  # the map in flight is of another setup: stop it, then start again
                self._again = True
                self.job.stop()
            return False
        if key == self._key and not force:
            return False
        self._key, self._again = key, False
        setup, dataset = self.controller.setup, self.controller.dataset
        names = list(METHODS)
        self.map, self.shape = [], None
        self.show_tiles()
        set_plain(self.status, f"Building {setup.base} apart from your model, then each of {len(names)} methods…")

        def work() -> Iterator[Any]:  # on the worker thread: the base, its miniature, then one tile per method
            base = map_base(setup, dataset)
            shape = miniature(base)
            yield shape, latency_batch(base, dataset)
            yield from map_tiles(base, shape, setup.seed, dataset, names, should_stop=lambda: stopped)

        stopped = False

        def stop() -> None:
            nonlocal stopped
            stopped = True

        return self.job.start(work, stop, f"Family map of {setup.base}", len(names))

    def _arrived(self, item: Any) -> None:
        if isinstance(item, tuple):
            self.shape, self.batch = item
            return
        self.map.append(item)
        job = self.job.job
        if job is not None:
            job.report(done=len(self.map), detail=item.method)
        set_plain(self.status, f"{len(self.map)}/{len(METHODS)} · {item.method}")
        self.show_tiles()

    def _done(self, error: JobError | None) -> None:
        again, self._again = self._again, False
        if error is not None:
            set_plain(self.status, f"{error.title('The family map')}: {error.message}")
        elif len(self.map) < len(METHODS):
            set_plain(self.status, f"Stopped after {len(self.map)} of {len(METHODS)} methods.")
        else:
            applies = sum(1 for t in self.map if t.applies)
            timing = (f"added latency: median of {LATENCY_REPEATS} timed pairs of forwards of {self.batch} texts, "
                      "one thread"
                      if self.batch else "latency not measured on a meta-device base")
            set_plain(self.status, f"{applies} of {len(self.map)} methods apply to {self._key[0]}; {timing}. Click "
                                   "a tile to open it.")
        if again or error is not None or len(self.map) < len(METHODS):
            self._key = None  # not the finished map of the current setup: shown again, it is computed again
        self.finished.emit()
        if again and self.isVisible():
            QTimer.singleShot(0, self.compute)

    def _setup_changed(self) -> None:
        if self.setup_key() != self._key and self.isVisible():
            self.compute()
        self._mark_current()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if TileMetrics(self.controller.view.presentation) != self.canvas.metrics:
            self.show_tiles()
        self.compute()

    def stop_and_wait(self, timeout_ms: int = 10_000) -> bool:
        return self.job.stop_and_wait(timeout_ms)

    # ---- showing -------------------------------------------------------------------------------------
    def _direction_changed(self, descending: bool) -> None:
        self.direction.setText("↓ largest first" if descending else "↑ smallest first")
        self.show_tiles()

    def sort_key(self) -> str:
        return str(self.sort_box.currentData())

    def show_tiles(self) -> None:
        """Lay the tiles out by group, each group in the chosen order."""
        metrics = TileMetrics(self.controller.view.presentation)
        if self.shape is None:
            self.canvas.set_sections([], metrics)
            return
        ordered = sort_tiles(self.map, self.sort_key(), self.direction.isChecked())
        shown = {id(widget.tile): widget for widget in self.canvas.tiles()}  # a tile's widget is reused
        sections = []
        for group, tiles in grouped(ordered):
            widgets = []
            for tile in tiles:
                widget = shown.get(id(tile))
                if widget is None:
                    widget = FamilyTile(tile, self.shape, self.batch, metrics, self.canvas)
                    widget.chosen.connect(self.method_chosen)
                widgets.append(widget)
            sections.append((group, widgets))
        self.canvas.set_sections(sections, metrics)
        self._mark_current()
        self._chain_focus()

    def _mark_current(self) -> None:
        current = self.controller.setup.method
        for tile in self.canvas.tiles():
            tile.set_current(tile.tile.method == current)

    def _chain_focus(self) -> None:
        """Tab moves through the tiles in the order they are shown."""
        tiles = self.canvas.tiles()
        for first, second in zip(tiles, tiles[1:], strict=False):
            QWidget.setTabOrder(first, second)

    def tile(self, method: str) -> FamilyTile | None:
        return next((t for t in self.canvas.tiles() if t.tile.method == method), None)
