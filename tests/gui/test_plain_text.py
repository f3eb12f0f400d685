"""Text from files is shown as plain text (gui/plain.py): every field of the window that shows a file's content
is fed an <img> naming a FIFO and one naming /dev/zero, and the window stays up without opening either.

Qt renders a string as rich text when its first line looks like HTML, and then opens the file an <img> names:
a FIFO blocks the GUI thread for good, /dev/zero fills memory. In this process a watchdog notices any open of
the FIFO (and ends it, so that a regression fails instead of hanging); the /dev/zero variant runs in a process
of its own under a memory limit. Both also look for any label, tooltip or graphics text that holds the hostile
text as rich text, so that a new label added without the rule fails here even before Qt would open anything."""

from __future__ import annotations

import ast
import os
import resource
import subprocess
import sys
from pathlib import Path

from hostile_window import feed, rich_places, write_inputs

WATCH = """
import os, signal, sys, time
fifo, count = sys.argv[1], 0

def report(*_):
    print(count, flush=True)  # once, at the end: a pipe filled line by line would block this process
    sys.exit(0)

signal.signal(signal.SIGTERM, report)
while True:
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # fails (ENXIO) while nobody has it open to read
    except OSError:
        time.sleep(0.02)
        continue
    count += 1
    os.close(fd)  # the reader sees end of file and goes on
"""


class FifoWatchdog:
    """In a process of its own (the GUI thread holds the GIL while Qt blocks in open()): opens the FIFO for
    writing whenever a reader has it open, counting how often, so that a regression fails instead of hanging."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.opened = 0

    def __enter__(self) -> FifoWatchdog:
        self._process = subprocess.Popen([sys.executable, "-c", WATCH, str(self.path)], stdout=subprocess.PIPE,
                                         text=True)
        return self

    def __exit__(self, *exc) -> None:
        self._process.terminate()
        out, _ = self._process.communicate(timeout=30)
        self.opened = int(out.split()[-1]) if out.split() else -1


def test_every_field_showing_file_text_renders_it_plain_and_never_opens_the_fifo(window, qtbot, errors, tmp_path,
                                                                                    monkeypatch):
    os.mkfifo(tmp_path / "fifo")
    monkeypatch.chdir(tmp_path)  # a relative <img src=fifo> resolves here
    files = write_inputs(tmp_path, str(tmp_path / "fifo"))
    with FifoWatchdog(tmp_path / "fifo") as watchdog:
        feed(window, files, lambda condition: qtbot.waitUntil(condition, timeout=30_000))
        for _ in range(10):
            qtbot.wait(20)
        places = rich_places()
    assert watchdog.opened == 0, "Qt opened the FIFO an <img> named"
    assert places == []
    assert window.isVisible()
    assert any("does not exist" in text for _, text in errors)  # the dialog quoting the file name was plain text
    notes = window.docks.notes_strip.text
    assert "<b>" in notes.text() and "&lt;img" in notes.text()  # formatted notes, their <img> shown as text


def test_dev_zero_in_every_field_leaves_the_window_up_within_bounded_memory(tmp_path):
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (6 * 2**30, 6 * 2**30))

    here = Path(__file__).parent
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": os.pathsep.join(
        [str(here), str(here.parent), os.environ.get("PYTHONPATH", "")]), "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data")}
    result = subprocess.run([sys.executable, str(here / "hostile_window.py")], capture_output=True, text=True,
                            timeout=300, env=env, preexec_fn=limit)
    assert "SURVIVED True" in result.stdout and "RICH []" in result.stdout, result.stdout + result.stderr[-3000:]
    assert result.returncode == 0


def test_message_boxes_go_through_the_plain_text_helper():
    """A static QMessageBox.critical/warning/information/question guesses the format: only gui/plain.py and the
    error dialog (which sets PlainText) build message boxes."""
    gui = Path(__file__).parents[2] / "peft_studio" / "gui"
    allowed = {gui / "plain.py", gui / "window" / "errors_dialog.py"}
    offenders = []
    for path in sorted(gui.rglob("*.py")):
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "QMessageBox" \
                    and node.attr in ("critical", "warning", "information", "question", "about"):
                offenders.append(f"{path.relative_to(gui)}:{node.lineno} QMessageBox.{node.attr}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "QMessageBox":
                offenders.append(f"{path.relative_to(gui)}:{node.lineno} QMessageBox(...)")
    assert offenders == []
