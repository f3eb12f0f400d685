"""`peft-studio screenshot OUT.png [--size WxH] [--presentation] [--method M] [--base B] [--steps N]`: the window,
rendered for real (the worker trains N steps, then it pauses) and saved as a PNG: for slides and the README.

Runs offscreen unless a platform is already chosen; never reads or writes the user's window settings.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_SIZE = (1600, 1000)


def check_request(path: str | Path, steps: int, method: str | None, base: str | None) -> Path:
    """Everything a screenshot needs, checked before any window is built (the same rules as every command:
    a PeftStudioError, one `error:` line): the output file, the method, the base (built once in the core,
    so an unknown or oversized base is refused here), and training only where the base has weights."""
    from ..core.bases import base_class, default_dataset, is_architecture
    from ..core.data import load_builtin
    from ..core.errors import ConfigError, OutputError
    from ..core.files.safe_io import check_writable
    from ..core.methods import METHODS
    from ..core.model.experiment import Experiment, Setup

    path = Path(path).expanduser()
    if not str(path).strip() or path.suffix.lower() != ".png":
        raise OutputError(f"{str(path)[:80] or 'the output'}: a screenshot is a PNG; give a file name ending in .png")
    check_writable(path, OutputError)
    if method is not None and method not in METHODS:
        raise ConfigError(f"unknown method {method[:40]!r}; known: {', '.join(METHODS)}")
    if base is not None:
        base_class(base)  # an unknown name or a missing folder, refused by name
        if steps > 0 and is_architecture(base):
            raise ConfigError(f"base {base[:60]!r} is an architecture without weights: it is drawn, not trained; "
                              "use --steps 0")
        Experiment(Setup(base, method or "lora"), load_builtin(default_dataset(base)))  # builds, or says why
    return path


def take(path: str | Path, steps: int = 60, size: tuple[int, int] = DEFAULT_SIZE, method: str | None = "lora",
         base: str | None = None, presentation: bool = False, sentence: str = "I was charged twice for my order") \
        -> Path:
    """Build the window, choose base and method, train `steps` steps in the worker, and save window.grab().
    Every argument is checked first (check_request); a dialog the window would show ends the screenshot
    with that message instead of waiting for a click nobody can give."""
    path = check_request(path, steps, method, base)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings

    from .app import make_app

    app = make_app([])
    settings_dir = tempfile.mkdtemp(prefix="peft-studio-shot-")  # the user's geometry and hints stay untouched
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, settings_dir)
    QSettings().setValue("hints/first_run_done", True)
    from . import plain
    from .window import errors_dialog
    from .window.main_window import MainWindow

    failures: list[str] = []

    def no_dialog(box) -> int:  # offscreen, a modal dialog would wait for ever
        failures.append(f"{box.windowTitle()}: {box.text()}")
        return 0

    saved = plain.show_box, errors_dialog._present
    plain.show_box = errors_dialog._present = no_dialog
    window = None
    try:
        window = MainWindow()
        return _render(window, app, failures, path, steps, size, method, base, presentation, sentence)
    finally:
        if window is not None:
            window.runner.stop_and_wait()
            window.close()
        plain.show_box, errors_dialog._present = saved


def _render(window, app, failures: list[str], path: Path, steps: int, size: tuple[int, int], method: str | None,
            base: str | None, presentation: bool, sentence: str) -> Path:
    from ..core.errors import ConfigError, OutputError

    if base and not window.controller.set_base(base):
        raise ConfigError(f"base {base!r}: {failures[-1] if failures else 'cannot be built'}")
    if method and not window.controller.set_method(method):
        raise ConfigError(f"method {method!r}: {failures[-1] if failures else 'cannot be built'}")
    window.controller.set_training(steps=max(1, steps))
    window.resize(*size)
    window.show()
    app.processEvents()
    window.inference.entry.setText(sentence)
    if presentation:
        window.presentation.set(True)
    if steps > 0:
        window.runner.play_pause()
        deadline = time.monotonic() + 300
        while window.runner.active and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.01)
        window.runner.stop_and_wait()
    if failures:
        raise ConfigError(failures[-1])
    for _ in range(5):
        app.processEvents()
    window.refresh_diagram()
    window.view.fit()
    app.processEvents()
    image = window.grab()
    if not image.save(str(path), "PNG"):
        raise OutputError(f"{path}: could not write the screenshot")
    return path


def parse_size(text: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720); a clear error otherwise."""
    from ..core.errors import ConfigError

    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size must be WIDTHxHEIGHT, e.g. 1280x720 (got {text!r})") from None
    if not (320 <= width <= 7680 and 240 <= height <= 4320):
        raise ConfigError(f"--size {text}: width 320..7680 and height 240..4320")
    return width, height


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = args[0] if args else "resources/screenshot.png"
    print(take(target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
