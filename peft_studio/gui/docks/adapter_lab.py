"""The "Adapters" dock: one frozen base, many small task adapters (the seed's "one base model, many
small adapters attached to it").

The lab owns a core AdapterSet built on the window's current base. The window follows the set's
active adapter (StudioState.show_adapter): the diagram, census, card and the main "Try it" show
whichever adapter was just switched to, added, trained or loaded, with no rebuild; editing the setup
in the window builds the window's own experiment again and the set keeps its adapters. Training runs
in a worker thread (core AdapterSet.train) and holds the window's run lock meanwhile, so the window
cannot train the same base at the same time (and the lab refuses while the window trains). The
switcher activates one adapter (timed: a few module assignments); the fingerprint line shows that
the frozen base never changes. Errors are dialogs (window.show_error) and leave the set as it was.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ...core.adapters.adapter_set import AdapterSet
from ...core.bases import train_defaults, uses_dataset_vocabulary
from ...core.data import TextDataset, builtin_names, load_builtin
from ...core.data.builtin import labelled_builtin_names
from ...core.errors import PeftStudioError
from ...core.methods import METHODS
from ...core.runs.interrupt import interruptible
from ...core.runs.train import TrainControl, TrainSettings
from ..jobs.background import BackgroundJob
from ..jobs.worker import JobError
from ..panels.adapters import AdapterSwitcher
from ..plain import plain_label
from .lora_tools import LoraTools

if TYPE_CHECKING:
    from ..window.main_window import MainWindow

DEFAULT_STEPS = 150
TRY_TEXT = "need a refund"
OWNER = "adapters"


@dataclass(frozen=True)
class Progress:
    """What the training thread hands to the GUI thread (plain numbers, no tensors)."""

    step: int
    steps: int
    loss: float
    accuracy: float
    last: bool


def set_methods() -> list[str]:
    """Methods a set can hold: those that add their own parameters (a shared base cannot be trained)."""
    return [name for name, method in METHODS.items() if not method.trains_base]


class AdapterLab(QWidget):
    def __init__(self, window: MainWindow, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.window = window
        self.job = BackgroundJob(self, window.controller.jobs, OWNER)  # an adapter's training: a visible job
        self.job.item.connect(self._progress)
        self.job.done.connect(self._trained)
        window.controller.lock_changed.connect(lambda _locked: self._enable())
        window.controller.changed.connect(self._window_changed)
        # The base check hashes every frozen tensor (~0.1 s on MiniLM): off the GUI thread, so a switch
        # stays one click that redraws at once; the line says "checking…" until the hash arrives.
        self.hash_job = BackgroundJob(self)
        self.hash_job.item.connect(self._show_fingerprint)
        self.hash_job.done.connect(self._hash_done)
        self._hash_again = False
        self.training_name: str | None = None
        self.last_progress: Progress | None = None

        self.set_label = plain_label("no set yet: adding an adapter builds one on the window's base")
        self.set_label.setWordWrap(True)
        self.set_label.setTextFormat(Qt.TextFormat.RichText)
        self.new_set_button = QPushButton("New set on the current base")
        self.new_set_button.setToolTip("Drop the adapters and start a set on the base the window uses now")
        self.new_set_button.clicked.connect(lambda: self.new_set())

        self.method_box = QComboBox()
        self.method_box.addItems(set_methods())
        self.method_box.setToolTip("Method of the new adapter (methods that train the base itself cannot share it)")
        self.data_box = QComboBox()
        self.data_box.addItems(labelled_builtin_names())  # a set holds classifiers: no next-token texts
        self.data_box.setToolTip("The task (a built-in dataset) the new adapter learns")
        self.steps_box = QSpinBox()
        self.steps_box.setRange(1, 100_000)
        self.steps_box.setValue(DEFAULT_STEPS)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("automatic: task-method")
        form = QFormLayout()
        form.addRow("method", self.method_box)
        form.addRow("task", self.data_box)
        form.addRow("steps", self.steps_box)
        form.addRow("name", self.name_edit)
        self.add_button = QPushButton("Add and train")
        self.add_button.setToolTip("Attach a new adapter to the shared base and train it in the background; the "
                                   "others stay attached and untouched")
        self.add_button.clicked.connect(lambda: self.add_and_train())
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        self.progress_label = plain_label("")  # adapter names and labels come from files
        self.progress_label.setWordWrap(True)

        self.switcher = AdapterSwitcher()
        self.switcher.adapter_chosen.connect(self.switch)
        self.lora_tools = LoraTools(self)

        self.try_edit = QLineEdit(TRY_TEXT)
        self.try_edit.setToolTip("Predicted with the active adapter")
        self.try_edit.textChanged.connect(lambda _t: self.refresh_try())
        self.try_label = plain_label("")
        self.try_label.setWordWrap(True)
        self.fingerprint_label = plain_label("")
        self.fingerprint_label.setToolTip("Hash of every frozen tensor of the shared base, after each switch and run")

        self.save_button = QPushButton("Save adapter…")
        self.save_button.clicked.connect(self.save_dialog)
        self.load_button = QPushButton("Load adapter…")
        self.load_button.clicked.connect(self.load_dialog)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.set_label)
        layout.addWidget(self.new_set_button)
        layout.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self.add_button)
        row.addWidget(self.stop_button)
        layout.addLayout(row)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.switcher, 1)
        layout.addWidget(self.lora_tools)
        layout.addWidget(QLabel("Try it with the active adapter:"))
        layout.addWidget(self.try_edit)
        layout.addWidget(self.try_label)
        layout.addWidget(self.fingerprint_label)
        files = QHBoxLayout()
        files.addWidget(self.save_button)
        files.addWidget(self.load_button)
        layout.addLayout(files)
        self._enable()

    @property
    def adapters(self) -> AdapterSet | None:
        """The set lives in the workspace (core), beside the studio's setup: this panel is its view."""
        return self.window.controller.adapters

    @adapters.setter
    def adapters(self, adapters: AdapterSet | None) -> None:
        self.window.controller.adapters = adapters

    def prepare_for(self, base: str) -> None:
        """Exercise 2 on `base`: an empty set (or none) starts on that base; a set with adapters on another base
        stays (nothing is dropped behind the user's back) and the panel says how to start one on `base`."""
        adapters = self.adapters
        if adapters is not None and adapters.base_name == base:
            return
        if adapters is None or not len(adapters):
            self.new_set()
            return
        self.set_label.setText(f"<b>This set is on {escape(adapters.base_name)}; the window now uses "
                               f"{escape(base)}.</b> Save the adapters you want to keep, then press "
                               f"\"New set on the current base\" to start one on {escape(base)}.")

    # ---- the window follows the active adapter ----------------------------------------------------
    def follow(self) -> float | None:
        """Show the set's active adapter in the window (diagram, census, card, Try it); returns how long
        the window took to show it, in milliseconds (None when it cannot follow now)."""
        adapters = self.adapters
        if adapters is None or adapters.active is None or self.job.running:
            return None
        start = time.perf_counter()
        shown = self.window.controller.show_adapter(adapters.get(adapters.active))
        return (time.perf_counter() - start) * 1000 if shown else None

    def show_active(self) -> float | None:
        """After a change to the set: the window follows the active adapter, which refreshes this panel too
        (_window_changed); when it cannot follow, refresh the panel alone. Returns follow()'s time."""
        window_ms = self.follow()
        if window_ms is None:
            self.refresh()
        return window_ms

    def _window_changed(self) -> None:
        """The window reset or retrained one of this set's adapters: show the set as it is now."""
        shown = self.window.controller.showing_adapter
        if shown is not None and shown.owner is self.adapters and not self.job.running:
            self.refresh()

    def busy(self) -> bool:
        """True (and says why in the status bar) while the lab or the window trains, or a merge test runs."""
        if self.job.running or self.lora_tools.job.running:
            return True
        if self.window.controller.locked:
            self.window.statusBar().showMessage("The window is training: stop its run before changing the adapter "
                                                "set", 6000)
            return True
        return False

    # ---- the set ---------------------------------------------------------------------------------
    def new_set(self) -> bool:
        """A fresh set on the window's base (same seed and options, so a single run's adapter loads in)."""
        if self.busy():
            return False
        setup = self.window.controller.setup
        datasets: list[TextDataset] = []
        if uses_dataset_vocabulary(setup.base):
            # A toy base's vocabulary is fixed when it is built: make it cover every task it may hold
            # (the built-ins the task list offers, plus the window's dataset when it is another one).
            datasets = [load_builtin(name) for name in labelled_builtin_names()]
            current = self.window.controller.dataset
            if current.name not in builtin_names():
                datasets.insert(0, current)
        try:
            adapters = AdapterSet.build(setup.base, datasets, seed=setup.seed, base_options=setup.base_options)
        except PeftStudioError as exc:
            self.window.show_error("Cannot build the adapter set", str(exc))
            return False
        self.adapters = adapters
        self.refresh()
        return True

    def _dataset(self, name: str) -> TextDataset:
        current = self.window.controller.dataset
        return current if name == current.name and name not in builtin_names() else load_builtin(name)

    def free_name(self, task: str, method: str) -> str:
        assert self.adapters is not None
        base, n = f"{task}-{method}", 2
        name = base
        while name in self.adapters:
            name, n = f"{base}-{n}", n + 1
        return name

    def add(self, method: str, task: str, name: str = "", options: dict[str, Any] | None = None) -> str | None:
        """Attach a new adapter (untrained) and make it active; None (and a dialog) when refused."""
        if self.busy():
            return None
        if self.adapters is None and not self.new_set():
            return None
        assert self.adapters is not None
        try:
            dataset = self._dataset(task)
            name = name.strip() or self.free_name(task, method)
            self.adapters.add(name, method, options, dataset, seed=self.adapters.seed)
        except PeftStudioError as exc:
            self.window.show_error("Cannot add this adapter", str(exc))
            self.refresh()
            return None
        self.show_active()
        return name

    def add_and_train(self) -> bool:
        name = self.add(self.method_box.currentText(), self.data_box.currentText(), self.name_edit.text())
        if name is None:
            return False
        self.name_edit.clear()
        return self.train(name, self.steps_box.value())

    def train(self, name: str, steps: int) -> bool:
        """Train `name` in a worker thread; the GUI shows progress and stays responsive."""
        adapters = self.adapters
        if adapters is None or self.busy():
            return False
        defaults = train_defaults(adapters.base_name)
        settings = TrainSettings(steps=steps, lr=defaults.lr, batch_size=defaults.batch_size, seed=adapters.seed,
                                 eval_every=max(steps, 1), track_grads=False)
        try:
            settings.check()
            adapters.get(name)
        except PeftStudioError as exc:
            self.window.show_error("Cannot train this adapter", str(exc))
            return False
        control = TrainControl()

        def run():  # worker thread: plain numbers only leave it; a stop ends a long step at its next layer
            with interruptible(adapters.get(name).model, lambda: control.stopped) as layer_stops:
                for event in adapters.train(name, settings, control):
                    yield Progress(event.step + 1, steps, event.loss, event.accuracy, event.last)
                    layer_stops.step_done()

        self.training_name = name
        self.last_progress = None
        adapters.activate(name)
        self.follow()  # the window shows the adapter being trained
        self.progress_label.setText(f"training {name}…")
        self.window.controller.lock(f"Adapter {name!r} is training in the Adapters panel: stop it there "
                                    "before changing or training the window's model.")
        self.job.start(run, control.stop, f"Training adapter {name!r} ({adapters.base_name})", steps)
        self._enable()
        return True

    def stop(self) -> None:
        self.job.stop()
        self.lora_tools.job.stop()
        self.hash_job.stop()

    def stop_and_wait(self, timeout_ms: int = 10_000) -> bool:
        self._hash_again = False
        return (self.job.stop_and_wait(timeout_ms) & self.lora_tools.stop_and_wait(timeout_ms)
                & self.hash_job.stop_and_wait(timeout_ms))

    def _progress(self, progress: Progress) -> None:
        self.last_progress = progress
        if self.job.job is not None:
            self.job.job.report(done=progress.step)
        self.progress_label.setText(f"training {self.training_name}: step {progress.step}/{progress.steps} · "
                                    f"loss {progress.loss:.4f} · accuracy {progress.accuracy:.0%}")

    def _trained(self, error: JobError | None) -> None:
        name, self.training_name = self.training_name, None
        self.window.controller.unlock()
        p = self.last_progress
        if error is not None:
            title = error.title(f"Training {name}")
            self.progress_label.setText(title)
            if not self.window.closing:
                self.window.show_error(title, error.message)
        elif p is not None:
            done = "trained" if p.last else "stopped"
            self.progress_label.setText(f"{name} {done} at step {p.step}/{p.steps} · loss {p.loss:.4f} · "
                                        f"accuracy {p.accuracy:.0%}")
        if not self.window.closing:
            self.show_active()  # the window's Try it and census show the trained adapter

    # ---- switching ---------------------------------------------------------------------------------
    def switch(self, name: str) -> float | None:
        """Activate `name` and show it in the window; returns (and shows) how long the switch itself took,
        in milliseconds (the window's redraw is shown beside it)."""
        if self.adapters is None or self.busy():
            return None
        try:
            start = time.perf_counter()
            self.adapters.activate(name)
            elapsed = (time.perf_counter() - start) * 1000
        except PeftStudioError as exc:
            self.window.show_error("Cannot switch adapters", str(exc))
            self.refresh()
            return None
        self.switcher.show_switch_time(elapsed, self.show_active())
        return elapsed

    # ---- files -----------------------------------------------------------------------------------
    def save_dialog(self) -> None:
        adapters = self.adapters
        if adapters is None or adapters.active is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save adapter", f"{adapters.active}.safetensors",
                                              "Adapters (*.safetensors)")
        if path:
            self.save_to(path)

    def save_to(self, path: str | Path, name: str | None = None) -> Path | None:
        adapters = self.adapters
        if adapters is None or self.busy():
            return None
        try:
            saved = adapters.save(name or adapters.active or "", path)
        except PeftStudioError as exc:
            self.window.show_error("Cannot save this adapter", str(exc))
            return None
        except OSError as exc:
            self.window.show_error("Cannot save this adapter", f"{Path(path).name}: {exc.strerror or exc}")
            return None
        self.window.statusBar().showMessage(f"Saved adapter {saved.name}", 5000)
        return saved

    def load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load adapter", "", "Adapters (*.safetensors)")
        if path:
            self.load_from(path)

    def load_from(self, path: str | Path, name: str | None = None) -> str | None:
        """Add an adapter file to the set (with no set yet, rebuild the base the file names)."""
        if self.busy():
            return None
        try:
            if self.adapters is None:
                adapters = AdapterSet.from_files([path])
                self.adapters = adapters
                loaded = adapters.active
            else:
                member = self.adapters.load(path, name)
                loaded = member.name  # label names only: it predicts; more training is a new adapter's job
        except PeftStudioError as exc:
            self.window.show_error("Cannot load this adapter", str(exc))
            self.refresh()
            return None
        self.show_active()
        return loaded

    # ---- showing ---------------------------------------------------------------------------------
    def refresh(self) -> None:
        adapters = self.adapters
        if adapters is None:
            self.switcher.show_infos([], self.window.controller.setup.base, 0)
            self.set_label.setText("no set yet: adding an adapter builds one on the window's base")
        else:
            self.switcher.show_set(adapters)
            self.set_label.setText(f"set on base {escape(adapters.base_name)} (seed {adapters.seed}): "
                                   f"{adapters.base_parameters():,} frozen parameters, {adapters.base_bytes():,} "
                                   f"bytes, shared by {len(adapters)} adapter(s)")
        self.refresh_try()
        self._enable()

    def refresh_try(self) -> None:
        adapters = self.adapters
        if adapters is None or adapters.active is None:
            self.try_label.setText("")
            self.fingerprint_label.setText("")
            return
        if self.job.running:
            self.try_label.setText("training… predictions refresh when it stops")
            return
        text = self.try_edit.text().strip()
        if text:
            try:
                probs = adapters.predict([text])[0].tolist()
                labels = adapters.info(adapters.active).labels
                best = max(range(len(probs)), key=probs.__getitem__)
                self.try_label.setText(f"{adapters.active}: → {labels[best]} ({probs[best]:.0%})")
            except PeftStudioError as exc:
                self.try_label.setText(f"cannot predict: {exc}")
        else:
            self.try_label.setText("")
        self.check_base()

    def check_base(self) -> None:
        """Hash the shared base in the background and show whether it still matches the set's build."""
        adapters = self.adapters
        if adapters is None:
            return
        if self.hash_job.running:
            self._hash_again = True  # a switch or a run came in meanwhile: check once more after this one
            return
        self.fingerprint_label.setText(f"base fingerprint {adapters.base_fingerprint[:12]} · checking…")
        self.hash_job.start(lambda: iter([(adapters, adapters.frozen_fingerprint())]))

    def _show_fingerprint(self, result: tuple[AdapterSet, str]) -> None:
        adapters, now = result
        if adapters is not self.adapters:
            return
        same = "unchanged ✓" if now == adapters.base_fingerprint else "CHANGED (a merged LoRA?)"
        self.fingerprint_label.setText(f"base fingerprint {now[:12]} · {same}")

    def _hash_done(self, error: JobError | None) -> None:
        if error is not None:
            self.fingerprint_label.setText(f"cannot check the base: {error.message}")
        if self._hash_again:
            self._hash_again = False
            self.check_base()

    def refresh_enabled(self) -> None:
        self._enable()

    def _enable(self) -> None:
        # The lab's own run holds the window's lock too: busy whenever either trains (or a merge test runs).
        busy = self.job.running or self.window.controller.locked or self.lora_tools.job.running
        self.lora_tools.enable(busy)
        has = self.adapters is not None and self.adapters.active is not None
        for widget in (self.add_button, self.new_set_button, self.load_button, self.switcher):
            widget.setEnabled(not busy)
        self.save_button.setEnabled(has and not busy)
        self.stop_button.setEnabled(self.job.running)
