"""The window's file flows: open a dataset, save/load an adapter, save/open a setup, export.

Each flow asks with a dialog, does the work through the core, and reports: a refused file is an error
dialog and changes nothing; a success is a status-bar line. Each kind of dialog opens in the folder it was
last used in (remembered between starts)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QRectF, QSettings
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QFileDialog, QMessageBox

from ...core.errors import PeftStudioError
from ...core.files.adapter_file import load_adapter, save_adapter
from ...core.files.setup_file import DataOutsideError, load_setup, save_setup
from ...core.interop.hf_peft import import_peft
from ...core.interop.recipe import plan_recipe, write_recipe
from ...core.model.experiment import Setup
from .. import plain
from ..diagram import DiagramScene
from ..panels.data_dialog import DataDialog
from ..plain import question

if TYPE_CHECKING:
    from .main_window import MainWindow


def ask_outside(parent, outside: DataOutsideError) -> bool:
    """A setup or lesson whose data file lies outside its folder: read it only when the user says so."""
    return question(parent, "Read a data file outside the setup's folder?",
                    f"This file reads its data from {outside.path}, which is not in its own folder. A setup shared "
                    "with you could point at any of your files. Read it?")
FOLDER_KEY = "folders/{}"  # the last folder each kind of dialog used


def last_folder(kind: str) -> str:
    folder = QSettings().value(FOLDER_KEY.format(kind), "", type=str)
    return folder if folder and Path(folder).is_dir() else ""


def remember_folder(kind: str, path: str | Path) -> None:
    path = Path(path)
    QSettings().setValue(FOLDER_KEY.format(kind), str(path if path.is_dir() else path.parent))


def in_last_folder(kind: str, name: str) -> str:
    """A file name suggested in the folder this kind of dialog last used."""
    folder = last_folder(kind)
    return str(Path(folder) / name) if folder else name


class FileFlows:
    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.import_notes_box: QMessageBox | None = None  # the last import's notes (kept for a test to read)

    @property
    def controller(self):
        return self.window.controller

    def _status(self, message: str) -> None:
        self.window.statusBar().showMessage(message, 5000)

    # ---- datasets -------------------------------------------------------------------------------
    def open_dataset_dialog(self) -> None:
        if self.window.runner.active:
            return
        path, _ = QFileDialog.getOpenFileName(self.window, "Open dataset", last_folder("dataset"),
                                              "Datasets (*.csv *.tsv *.jsonl *.json)")
        if path:
            remember_folder("dataset", path)
            self.open_dataset(path)
        else:
            self.window.refresh_choices()

    def open_dataset(self, path: str | Path, text_column: str | None = None, label_column: str | None = None) -> bool:
        """Preview + column choosers (or the given columns); a loader error is a dialog and nothing changes."""
        try:
            dialog = DataDialog(path, self.window)
            if text_column is None:
                if not dialog.exec():
                    self.window.refresh_choices()
                    return False
            else:
                dialog.text_column.setCurrentText(text_column)
                dialog.label_column.setCurrentText(label_column or "label")
            dataset = dialog.load()
        except PeftStudioError as exc:
            self.window.show_error("Cannot open this dataset", str(exc))
            self.window.refresh_choices()
            return False
        if not self.controller.set_dataset(dataset):
            self.window.refresh_choices()
            return False
        return True

    # ---- bases ----------------------------------------------------------------------------------
    def open_base_dialog(self) -> None:
        if self.window.runner.active:
            return
        path = QFileDialog.getExistingDirectory(self.window, "Open base: a checkpoint folder (config.json, "
                                                "model.safetensors, tokenizer.json)")
        if path:
            self.open_base(path)
        else:
            self.window.refresh_choices()

    def open_base(self, path: str | Path) -> bool:
        """A folder with weights loads in the background (progress, Cancel); a config.json-only folder opens at
        once on the meta device. The base changes when the load has finished; a refused folder changes nothing."""
        from ...core.bases.architectures import is_config_spec

        if is_config_spec(str(path)):
            return self.controller.set_base(str(path))
        return self.window.base_loader.start(path)

    # ---- adapters -------------------------------------------------------------------------------
    def save_adapter_dialog(self) -> None:
        setup = self.controller.setup
        path, _ = QFileDialog.getSaveFileName(self.window, "Save adapter",
                                              in_last_folder("adapter", f"{setup.base}-{setup.method}.safetensors"),
                                              "Adapters (*.safetensors)")
        if path:
            remember_folder("adapter", path)
            self.save_adapter_to(path)

    def save_adapter_to(self, path: str | Path) -> Path | None:
        return self._save("adapter", lambda: save_adapter(self.controller.experiment, path))

    def load_adapter_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Load adapter", last_folder("adapter"),
                                              "Adapters (*.safetensors)")
        if path:
            remember_folder("adapter", path)
            self.load_adapter_from(path)

    def load_adapter_from(self, path: str | Path) -> bool:
        """Copy a saved adapter into the current model; a mismatch is a dialog and changes nothing."""
        if self.window.runner.active:
            return False
        try:
            load_adapter(self.controller.experiment, path)
        except PeftStudioError as exc:
            self.window.show_error("Cannot load this adapter", str(exc))
            return False
        self.window.refresh_inference()
        self._status(f"Loaded adapter {Path(path).name}")
        return True

    # ---- Hugging Face PEFT folders -----------------------------------------------------------------
    def import_peft_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Import a Hugging Face PEFT adapter folder")
        if folder:
            self.import_peft_from(folder)

    def import_peft_from(self, folder: str | Path) -> bool:
        """The adapter's method, settings and weights on the current base and dataset (one undo step). Everything
        is checked on a model of its own first: a refused folder is a dialog and changes nothing. What the import
        leaves out or reads differently is said: in the status bar and, in full, in a details dialog."""
        if self.window.runner.active:
            return False
        c = self.controller
        if c.building:  # the import reads the current base: not the one being replaced
            self.window.statusBar().showMessage("Building the new setup: import the adapter once it is ready", 6000)
            return False
        try:
            checked = import_peft(Setup(c.setup.base, seed=c.setup.seed, base_options=dict(c.setup.base_options)),
                                  folder, c.dataset)
        except PeftStudioError as exc:
            self.window.show_error("Cannot import this PEFT adapter", str(exc))
            return False
        if not c.adopt(checked, c.settings):  # the checked model itself: no second build, nothing to copy
            return False
        self.window.refresh_inference()
        name = Path(folder).name
        if not checked.notes:
            self._status(f"Imported PEFT adapter {name} ({checked.setup.method})")
            return True
        self.window.statusBar().showMessage(f"Imported PEFT adapter {name} ({checked.setup.method}): "
                                            f"{len(checked.notes)} note(s) on what it leaves out or reads "
                                            "differently — see the details", 15000)
        self.show_import_notes(name, checked.notes)
        return True

    def show_import_notes(self, name: str, notes: list[str]) -> QMessageBox:
        """A non-blocking dialog: the first note in its text, every note under Show Details."""
        box = plain.notes_box(self.window, "PEFT adapter imported",
                              f"Imported {name}. {len(notes)} note(s) on what the import leaves out or reads "
                              f"differently:\n\n{notes[0]}", "\n\n".join(notes))
        box.setObjectName("peftImportNotes")
        self.import_notes_box = box
        return box

    # ---- setups ---------------------------------------------------------------------------------
    def save_setup_dialog(self) -> None:
        setup = self.controller.setup
        path, _ = QFileDialog.getSaveFileName(self.window, "Save setup",
                                              in_last_folder("setup", f"{setup.base}-{setup.method}.json"),
                                              "Setups (*.json)")
        if path:
            remember_folder("setup", path)
            self.save_setup_to(path)

    def save_setup_to(self, path: str | Path) -> Path | None:
        c = self.controller
        return self._save("setup", lambda: save_setup(path, c.setup, c.dataset, c.settings))

    def open_setup_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open setup", last_folder("setup"), "Setups (*.json)")
        if path:
            remember_folder("setup", path)
            self.open_setup(path)

    def open_setup(self, path: str | Path) -> bool:
        """Read, check and build a saved setup; any problem is a dialog and the current setup stays."""
        if self.window.runner.active:
            return False
        try:
            try:
                setup, dataset, settings = load_setup(path)
            except DataOutsideError as outside:  # the user names the file by saying yes
                if not ask_outside(self.window, outside):
                    return False
                setup, dataset, settings = load_setup(path, data_file=outside.path)
        except PeftStudioError as exc:
            self.window.show_error("Cannot open this setup", str(exc))
            return False
        if not self.controller.open_setup(setup, dataset, settings):
            return False
        self._status(f"Opened setup {Path(path).name}")
        return True

    # ---- export ---------------------------------------------------------------------------------
    def export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.window, "Export", in_last_folder("export", "peft-studio.png"),
                                              "Plots PNG (*.png);;Loss curve CSV (*.csv);;Diagram SVG (*.svg)")
        if path:
            remember_folder("export", path)
            self.export_to(path)

    def export_to(self, path: str | Path) -> Path | None:
        path = Path(path)
        suffix = path.suffix.lower()
        plots = self.window.plots
        if suffix == ".csv":
            return self._save("curve", lambda: plots.export_csv(path))
        if suffix == ".svg":
            return self._save("diagram", lambda: export_svg(self.window.scene, path))
        return self._save("plots", lambda: plots.export_png(path))

    # ---- recipe (a training project for the real model) -------------------------------------------
    def export_recipe_dialog(self) -> None:
        """The setup is checked first (a method PEFT lacks is refused before any folder is asked for); then a
        new folder is named (it need not exist yet: the recipe creates it)."""
        c = self.controller
        try:
            plan_recipe(c.setup, c.dataset, c.settings)
        except PeftStudioError as exc:
            self.window.show_error("Cannot export the recipe", str(exc))
            return
        suggested = in_last_folder("recipe", f"{c.setup.base}-{c.setup.method}-recipe")
        folder, _ = QFileDialog.getSaveFileName(self.window, "Export recipe: name a new (or empty) folder",
                                                suggested, "Recipe folder (*)",
                                                options=QFileDialog.Option.ShowDirsOnly
                                                | QFileDialog.Option.DontConfirmOverwrite)
        if folder:
            remember_folder("recipe", Path(folder).parent)
            self.export_recipe_to(folder)

    def export_recipe_to(self, folder: str | Path) -> Path | None:
        """Plan and write the recipe; a refused setup or folder is a dialog, a success a status-bar line."""
        c = self.controller
        try:
            plan = plan_recipe(c.setup, c.dataset, c.settings)
            written = write_recipe(plan, folder)
        except (PeftStudioError, OSError) as exc:
            self.window.show_error("Cannot export the recipe", str(exc))
            return None
        self._status(f"Saved recipe to {written}: {plan.setup.method} on {plan.model_id or plan.setup.base}, "
                     f"{plan.expected['peft']['adapter_trainable']:,} adapter parameters; README.md has the "
                     "accelerate launch lines")
        return written

    def _save(self, what: str, write: Callable[[], Path]) -> Path | None:
        """Write a user's file: a failure is a dialog, a success a status-bar line."""
        try:
            saved = write()
        except (PeftStudioError, OSError) as exc:
            self.window.show_error(f"Cannot save the {what}", str(exc))
            return None
        self._status(f"Saved {what} to {saved}")
        return saved


def export_svg(scene: DiagramScene, path: Path) -> Path:
    """pyqtgraph's SVG exporter fails on Qt 6.11; QSvgGenerator renders the scene directly. The table's
    selection outline is a pointer for the screen, not part of the drawing: it is left out."""
    from PySide6.QtSvg import QSvgGenerator

    rect = scene.sceneRect()
    generator = QSvgGenerator()
    generator.setFileName(str(path))
    generator.setSize(rect.size().toSize())
    generator.setViewBox(QRectF(0, 0, rect.width(), rect.height()))
    generator.setTitle("PEFT Studio diagram")
    marked = set(scene.marked)
    scene.mark(set())
    try:
        painter = QPainter(generator)
        scene.render(painter, QRectF(0, 0, rect.width(), rect.height()), rect)
        painter.end()
    finally:
        scene.mark(marked)
    if not path.is_file():
        raise OSError(f"{path}: could not write the SVG")
    return path
