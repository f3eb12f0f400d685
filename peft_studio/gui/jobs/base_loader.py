"""Open a checkpoint folder without freezing the window: the weights are read in a worker with a progress dialog
and Cancel, then the controller switches to the loaded base (core: bases.load_folder's progress and cancel)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QProgressDialog, QWidget

from ...core.bases import load_folder
from ...core.bases.decoder_checkpoint import DecoderCheckpointBase, preload
from .background import BackgroundJob
from .worker import JobError

SHOW_AFTER_MS = 1000  # a load shorter than a second shows no dialog


class BaseLoader(QObject):
    """One load at a time; `loaded(path)` once the base is ready for `create_base(path)`, `failed(title, text)`."""

    loaded = Signal(str)
    failed = Signal(str, str)

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.parent_widget = parent
        self.job = BackgroundJob(self)
        self.job.item.connect(self._on_item)
        self.job.done.connect(self._on_done)
        self.dialog: QProgressDialog | None = None
        self.path = ""
        self.cancelled = False

    @property
    def running(self) -> bool:
        return self.job.running

    def start(self, path: str | Path) -> bool:
        if self.job.running:
            return False
        self.path, self.cancelled = str(path), False
        dialog = self.dialog = QProgressDialog(f"Loading {Path(path).name}…", "Cancel", 0, 1000, self.parent_widget)
        dialog.setWindowTitle("Open base")
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setMinimumDuration(SHOW_AFTER_MS)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        dialog.canceled.connect(self.cancel)
        dialog.setValue(0)
        return self.job.start(lambda: self._load(self.path))

    def cancel(self) -> None:
        self.cancelled = True
        self.job.stop()

    def _load(self, path: str) -> Iterator[tuple]:  # worker thread: only plain values go back to the window
        worker = self.job.worker
        report: Callable[[float, str], None] = lambda fraction, name: worker.items.append(  # noqa: E731
            ("progress", fraction, name))
        base = load_folder(path, progress=report, cancelled=lambda: worker.stopping)
        if isinstance(base, DecoderCheckpointBase):
            base.fingerprint()  # hashed here, once, not on the GUI thread when the experiment is built
            preload(base)  # the controller's create_base(path) takes it instead of reading the files again
        yield ("loaded", path)

    def _on_item(self, item: tuple) -> None:
        if item[0] == "progress" and self.dialog is not None:
            self.dialog.setValue(int(1000 * item[1]))
            self.dialog.setLabelText(f"Loading {Path(self.path).name}… {item[2][:60]}")

    def _on_done(self, ended: JobError | None) -> None:
        error = "" if ended is None else f"{ended.title('Loading the base')}\n{ended.message}"
        if self.dialog is not None:
            self.dialog.canceled.disconnect(self.cancel)  # closing the dialog emits canceled: not the user's
            self.dialog.close()
            self.dialog.deleteLater()
            self.dialog = None
        if self.cancelled:
            self.failed.emit("", f"loading {Path(self.path).name} was cancelled; the base is unchanged")
        elif error:
            title, _, text = error.partition("\n")
            self.failed.emit("Cannot open this base", text or title)
        else:
            self.loaded.emit(self.path)

    def stop_and_wait(self) -> bool:
        self.cancelled = True
        return self.job.stop_and_wait()
