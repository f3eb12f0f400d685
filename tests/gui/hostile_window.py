"""Feeds every field of the window that shows a file's content an <img> naming a file, and finds any place
that would render it as rich text. Used in-process (a FIFO, with a watchdog that notices any open of it) by
test_plain_text.py and in a process of its own (/dev/zero, under a memory limit) by the same test."""

from __future__ import annotations

import json
import os
from pathlib import Path

from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtWidgets import QAbstractItemView, QApplication, QComboBox, QGraphicsTextItem, QGraphicsView, QLabel

MARK = "peftstudiohostile"  # in every hostile string, so that the studio's own <img> (the padlock) is not counted


def hostile(src: str) -> str:
    return f'<img src="{src}">{MARK}'


def write_inputs(folder: Path, src: str) -> dict[str, Path]:
    """Files whose text fields all hold an <img> of `src` (a relative src is resolved from the working folder)."""
    from peft_studio.core.adapters.adapter_set import AdapterSet
    from peft_studio.core.data import load_dataset_file
    from peft_studio.core.runs.compare import family_records, run_family
    from peft_studio.core.runs.run_store import RunRecord, RunStore
    from peft_studio.core.runs.train import TrainSettings

    img = hostile(src)
    files: dict[str, Path] = {}
    data = folder / "hostile.csv"
    rows = [("need a refund " + img, img + " refund"), ("cannot login " + img, img + " login"),
            ("where is my parcel", img + " shipping")] * 6
    quote = lambda text: '"' + text.replace('"', '""') + '"'  # noqa: E731 - CSV's doubled quotes
    data.write_text("text,label\n" + "".join(f"{quote(t)},{quote(lab)}\n" for t, lab in rows))
    files["data"] = data
    dataset = load_dataset_file(data, "text", "label")
    adapters = AdapterSet.build("tiny", [dataset])
    adapters.add(img.replace(",", ""), "lora", {"r": 2}, dataset)
    files["adapter"] = adapters.save(adapters.names()[0], folder / "hostile.safetensors")
    setup = {"format": "peft-studio-setup", "version": 1, "base": "tiny", "base_options": {}, "method": "lora",
             "options": {}, "seed": 0, "dataset": {"path": "hostile.csv", "text_column": "text",
                                                    "label_column": "label"},
             "training": {"steps": 3, "lr": 0.01, "batch_size": 0, "optimizer": "adam", "weight_decay": 0.0,
                          "seed": 0, "eval_every": 10}}
    lesson = {"format": "peft-studio-lesson", "version": 1, "title": img, "setup": setup,
              "notes": [img, f"**{img}** and `{img}` and [{img}]({src})", "- " + img]}
    files["lesson"] = folder / "lesson.json"
    files["lesson"].write_text(json.dumps(lesson))
    missing = dict(setup, dataset={**setup["dataset"], "path": f"{img}.csv"})
    files["broken setup"] = folder / "broken.json"
    files["broken setup"].write_text(json.dumps(missing))
    runs = RunStore(folder / "runs")
    record = family_records(run_family("seed-pooled", load_dataset_file(data, "text", "label"),
                                       TrainSettings(steps=2), methods=["lora"]))[0]
    fields = {k: img for k in ("method", "base", "dataset", "where", "created", "forgetting_measure", "lens_note")}
    fields["lens_effective_rank"] = None  # its "—" cell's tooltip shows lens_note
    runs.save(RunRecord(**{**record.__dict__, **fields, "run_id": "hostile-run"}))
    relative = f"<img src={Path(src).name}>"  # a run id has no '/': a src relative to the working folder
    runs.save(RunRecord(**{**record.__dict__, **fields, "run_id": relative + MARK}))
    (runs.folder / f"{relative}{MARK}-broken.json").write_text("{")
    files["runs"] = runs.folder
    architecture = folder / "arch"
    architecture.mkdir()
    (architecture / "config.json").write_text(json.dumps({
        "model_type": "llama", "_name_or_path": img, "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 64}))
    files["architecture"] = architecture
    return files


def feed(window, files: dict[str, Path], wait) -> None:
    """Open every hostile file the way a user would, showing each panel that displays it."""
    from peft_studio.gui.window.lessons import open_lesson_file

    docks = window.docks
    for name in ("compare", "adapters", "memory", "exercises", "lens"):  # lesson notes: a strip, shown by a lesson
        docks.show_dock(name)
    assert window.files.open_dataset(files["data"], "text", "label")
    window.tabs.setCurrentIndex(2)  # Try it
    window.inference.entry.setText("need a refund")
    window.refresh_inference()
    QApplication.processEvents()
    assert docks.lab.load_from(files["adapter"]) is not None
    docks.lab.try_edit.setText("need a refund")
    QApplication.processEvents()
    assert open_lesson_file(window, files["lesson"])
    assert not window.files.open_setup(files["broken setup"])  # an error dialog quoting the file name
    board = docks.board.board
    from peft_studio.core.runs.run_store import RunStore

    board.store = RunStore(files["runs"])
    assert board.reload()
    wait(lambda: not board.loading)
    docks.board.tabs.setCurrentWidget(board)
    window.controller.set_base(str(files["architecture"]))
    window.controller.wait_for_builds()  # a folder builds off the GUI thread
    QApplication.processEvents()
    window.scene.rebuild()
    QApplication.processEvents()


def rich_places() -> list[str]:
    """Every place that holds the hostile text where Qt would render it as rich text (should be none)."""
    found = []

    def raw(text: str) -> bool:
        return MARK in text and "<img" in text

    for widget in QApplication.allWidgets():
        where = f"{type(widget).__name__} {widget.objectName()!r}"
        if isinstance(widget, QLabel) and raw(widget.text()) and widget.textFormat() != Qt.TextFormat.PlainText:
            found.append(f"{where}: label text {widget.text()[:80]!r}")
        if raw(widget.toolTip()):
            found.append(f"{where}: tooltip {widget.toolTip()[:80]!r}")
        for action in widget.actions():
            if raw(action.toolTip()):
                found.append(f"{where}: action tooltip {action.toolTip()[:80]!r}")
        model = widget.model() if isinstance(widget, QAbstractItemView | QComboBox) else None
        if model is not None:
            for row in range(min(model.rowCount(QModelIndex()), 500)):
                for column in range(50):  # a list model's columnCount is private in PySide: walk valid indexes
                    index = model.index(row, column)
                    if not index.isValid():
                        break
                    tip = model.data(index, Qt.ItemDataRole.ToolTipRole)
                    if isinstance(tip, str) and raw(tip):
                        found.append(f"{where}: item tooltip {tip[:80]!r}")
        if isinstance(widget, QGraphicsView) and widget.scene() is not None:
            for item in widget.scene().items():
                if raw(item.toolTip()):
                    found.append(f"{where}: graphics tooltip {item.toolTip()[:80]!r}")
                if isinstance(item, QGraphicsTextItem) and raw(item.toHtml()):
                    found.append(f"{where}: graphics text {item.toPlainText()[:80]!r}")
    return found


def main() -> int:
    """The /dev/zero variant, in a process of its own (see test_plain_text.py)."""
    import tempfile
    import time

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    folder = Path(tempfile.mkdtemp(prefix="peft-studio-hostile-"))
    os.chdir(folder)
    from peft_studio.gui import plain
    from peft_studio.gui.app import make_app
    from peft_studio.gui.window import errors_dialog

    make_app([])
    plain.show_box = errors_dialog._present = lambda box: 0  # dialogs are counted by the in-process test
    from peft_studio.gui.window.main_window import MainWindow

    window = MainWindow()
    window.show()

    def wait(condition, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            QApplication.processEvents()
            time.sleep(0.01)

    (folder / "zero").symlink_to("/dev/zero")  # absolute and relative (<img src=zero>) srcs both reach it
    feed(window, write_inputs(folder, str(folder / "zero")), wait)
    for _ in range(20):
        QApplication.processEvents()
    places = rich_places()
    print("RICH", places)
    print("SURVIVED", window.isVisible())
    window.close()
    return 0 if not places else 1


if __name__ == "__main__":
    raise SystemExit(main())
