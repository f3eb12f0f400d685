"""The last session, remembered between starts (QSettings): the setup the window closed on (base, method
and options, dataset, training settings, as a setup document) and presentation mode; and "Restore
defaults", which forgets all of it (geometry, hints, last choices) and returns to the default setup."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings

from ...core.errors import PeftStudioError
from ...core.files.setup_file import parse_setup, setup_document
from ...core.model.experiment import Setup
from ...core.studio import default_settings

if TYPE_CHECKING:
    from .main_window import MainWindow

SESSION_KEY = "session/setup"
PRESENTATION_KEY = "session/presentation"
ROOT = Path("/")  # data file paths are stored absolute (relative to the root) so any working folder reads them


def save_session(window: MainWindow) -> None:
    """Remember the current setup; a dataset that cannot be named (built in memory) is simply not kept."""
    c = window.controller
    settings = QSettings()
    try:
        document = setup_document(c.setup, c.dataset, c.settings, ROOT)
    except PeftStudioError:
        settings.remove(SESSION_KEY)
    else:
        settings.setValue(SESSION_KEY, json.dumps(document))
    settings.setValue(PRESENTATION_KEY, window.presentation.on)


def restore_session(window: MainWindow) -> str | None:
    """Reopen the last session's setup; a stale one (a moved data file, an old version) is dropped quietly
    and the window keeps its default. Returns what was restored, for the status bar."""
    settings = QSettings()
    text = settings.value(SESSION_KEY)
    if not text:
        return None
    try:
        doc = json.loads(str(text))
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        setup, dataset, training = parse_setup(doc, ROOT, "the last session")
    except (PeftStudioError, ValueError, RecursionError):
        settings.remove(SESSION_KEY)
        return None
    if not window.controller.start_from(setup, dataset, training):
        settings.remove(SESSION_KEY)
        return None
    if settings.value(PRESENTATION_KEY, False, type=bool):
        window.presentation.set(True)
    return f"Restored the last session: {setup.base}, {setup.method}, {dataset.name}"


def restore_defaults(window: MainWindow) -> None:
    """Forget every remembered choice and return to the default setup, layout and size."""
    if window.runner.active:
        window.statusBar().showMessage("Stop the run first (Esc), then restore the defaults.", 5000)
        return
    QSettings().clear()
    c = window.controller
    c.view.set(presentation=False)
    c.view.set(side_panels=True, collapsed=None, shown_layers=None, hidden_panels=frozenset(),
               hidden_controls=frozenset(), notes_title="", notes=())
    for dock in (window.docks.compare, window.docks.adapters, window.docks.exercises, window.docks.memory):
        dock.hide()
    window.docks.setup.show()
    window.docks.setup.raise_()
    setup = Setup()
    from ...core.data import load_builtin

    c.set_everything(setup, load_builtin("intents"), default_settings(setup.base, setup.seed))
    window.place_on_screen()  # the default size, within the screen
    window.statusBar().showMessage("Restored the defaults: tiny, LoRA, intents; the layout and size as new.", 6000)
