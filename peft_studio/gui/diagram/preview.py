"""The diagram following a family run, as a clearly marked preview that ends where the user left it.

While the Compare panel's family run trains a method, the diagram may show where that method puts its part
(a strip above it says "Preview" and names the user's own setup). The preview builds its own experiment of
that method on the user's base and dataset; the user's setup, undo history, census, card and every panel
stay as they were, and insertion points do nothing while it shows. It ends when the run ends, when the
user presses "Back to my setup", or at the user's next edit or Play.
"""

from __future__ import annotations

from dataclasses import replace
from html import escape
from typing import TYPE_CHECKING

from ...core.bases.sites import Site
from ...core.errors import PeftStudioError
from ...core.methods import METHODS
from ...core.model.experiment import Experiment
from ...core.studio import ClickEffect, builds_slowly
from ..jobs.worker import BUILD_TORCH_THREADS, Worker
from .describe import diagram_info

if TYPE_CHECKING:
    from ..window.main_window import MainWindow


class PreviewSource:
    """A DiagramSource for one method's experiment: no clicks, no click effects."""

    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment
        self.census = experiment.census()
        self.setup = experiment.setup
        self.locked = True
        self._selected = {s.id for s in experiment.selected_sites()}

    def selected_site_ids(self) -> set[str]:
        return self._selected

    def method_for_site(self, site: Site) -> str:
        return self.setup.method

    def click_effect(self, site: Site) -> ClickEffect | None:
        return None


class Preview:
    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.method: str | None = None
        self.source: PreviewSource | None = None
        self.following = True  # False after "Back to my setup", until the next family run
        self._builds: list[Worker] = []

    @property
    def active(self) -> bool:
        return self.source is not None

    def follow(self, method: str) -> None:
        """The family run moved on to `method`: preview it (unless the user went back, or trains meanwhile)."""
        w = self.window
        if not self.following or w.runner.active or w.closing:
            return
        c = w.controller
        self.method = method
        setup = replace(c.setup, method=method, options={})
        dataset = c.dataset
        if builds_slowly(setup.base):  # a checkpoint: built beside the run, shown when ready
            worker = Worker(lambda: iter([Experiment(setup, dataset)]), where="building the preview",
                            torch_threads=BUILD_TORCH_THREADS)
            worker.finished.connect(lambda: self._built(worker, method))
            self._builds.append(worker)
            worker.start()
            return
        try:
            self._show(Experiment(setup, dataset))
        except PeftStudioError:
            return  # a method the base refuses is skipped by the run too

    def _built(self, worker: Worker, method: str) -> None:
        worker.wait()
        self._builds.remove(worker)
        items = worker.drain()
        worker.deleteLater()
        if items and method == self.method and self.following:
            self._show(items[0])

    def _show(self, experiment: Experiment) -> None:
        w = self.window
        self.source = PreviewSource(experiment)
        title = METHODS[experiment.setup.method].title if experiment.setup.method in METHODS else \
            experiment.setup.method
        mine = METHODS[w.controller.setup.method].title if w.controller.setup.method in METHODS else \
            w.controller.setup.method
        w.preview_strip.say(f"<b>Preview</b> — the family run is training <b>{escape(title)}</b>: the diagram shows "
                            f"where it puts its part. Your setup ({escape(mine)} on {escape(w.controller.setup.base)})"
                            " and its history are unchanged.", "Back to my setup", self.leave)
        self.redraw()

    def redraw(self) -> None:
        if self.source is None:
            return
        w = self.window
        w.scene.build(diagram_info(self.source, w.inference.entry.text()))
        if w.view.auto_fit:
            w.view.fit()

    def leave(self) -> None:
        """Back to my setup (the button, or the user's own edit or Play): stop following this family run."""
        if self.source is None and self.method is None:
            return
        self.following = False
        self._clear()

    def end(self) -> None:
        """The family run ended: the diagram shows the user's setup again; the next run may be followed."""
        self.following = True
        if self.source is not None or self.method is not None:
            self._clear()

    def _clear(self) -> None:
        self.method = None
        self.source = None
        self.window.preview_strip.dismiss()
        self.window.refresh_diagram()

    @property
    def busy(self) -> bool:
        return any(w.isRunning() for w in self._builds)
