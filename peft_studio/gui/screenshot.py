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


def take(path: str | Path, steps: int = 60, size: tuple[int, int] = DEFAULT_SIZE, method: str | None = "lora",
         base: str | None = None, presentation: bool = False, sentence: str = "I was charged twice for my order") \
        -> Path:
    """Build the window, choose base and method, train `steps` steps in the worker, and save window.grab()."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings

    from .app import make_app

    app = make_app([])
    settings_dir = tempfile.mkdtemp(prefix="peft-studio-shot-")  # the user's geometry and hints stay untouched
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, settings_dir)
    QSettings().setValue("hints/first_run_done", True)
    from ..core.errors import ConfigError
    from .window.main_window import MainWindow

    window = MainWindow()
    failures: list[str] = []
    window.controller.failed.connect(lambda title, message: failures.append(f"{title}: {message}"))
    if base and (not window.controller.set_base(base) or not window.controller.wait_for_builds() or failures):
        raise ConfigError(f"base {base!r}: {failures[-1] if failures else 'cannot be built'}")
    if method and (not window.controller.set_method(method) or not window.controller.wait_for_builds()
                   or failures):
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
    for _ in range(5):
        app.processEvents()
    window.refresh_diagram()
    window.view.fit()
    app.processEvents()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = window.grab()
    window.close()
    if not image.save(str(path)):
        raise OSError(f"{path}: could not write the screenshot")
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
