"""`peft-studio screenshot OUT.png [--size WxH] [--presentation] [--method M] [--base B] [--steps N]`: the window,
rendered for real (the worker trains N steps, then it pauses) and saved as a PNG: for slides and the README.
`peft-studio screenshot --readme FOLDER` writes every picture the README shows (README_PICTURES).

Runs offscreen unless a platform is already chosen; never reads or writes the user's window settings.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
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
    Every argument is checked first (check_request); a dialog the window would show ends the screenshot with
    that message instead of waiting offscreen for a click nobody can give."""
    path = check_request(path, steps, method, base)
    app = _app()
    with _no_dialogs() as failures:
        window = _window(size, base, method, sentence)
        try:
            window.controller.set_training(steps=max(1, steps))
            if presentation:
                window.presentation.set(True)
            _train(app, window, steps)
            if failures:
                from ..core.errors import ConfigError

                raise ConfigError(failures[-1])
        except BaseException:
            window.runner.stop_and_wait()
            window.close()
            raise
        return _grab(app, window, path)


def take_family_map(path: str | Path, base: str | None = None, size: tuple[int, int] = (1280, 720),
                    presentation: bool = False) -> Path:
    """The Family map dock (View > Family map) of `base`, floated at `size`, once every tile is computed."""
    path = check_request(path, 0, None, base)
    app = _app()
    with _no_dialogs() as failures:
        window = _window(DEFAULT_SIZE, base, None)
        try:
            if presentation:
                window.presentation.set(True)
            dock, panel = window.docks.family_map, window.docks.map_panel
            window.docks.show_dock("family-map")
            dock.resize(*size)
            _wait(app, lambda: panel.ready or (not panel.running and not panel.map), TIMEOUT_S)
            if failures or not panel.ready:
                from ..core.errors import ConfigError

                late = f"did not finish in {TIMEOUT_S} s" if panel.running else "ended early"
                raise ConfigError(failures[-1] if failures else f"the family map of {window.controller.setup.base} "
                                  f"{late}: {panel.status.text()}")
            for _ in range(5):
                app.processEvents()
            image = dock.grab()
        finally:
            window.docks.map_panel.stop_and_wait()
            window.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(path), "PNG"):
        from ..core.errors import OutputError

        raise OutputError(f"{path}: could not write the screenshot")
    return path


# ---- the README's pictures -------------------------------------------------------------------------
LESSON_SHOWN = "word-order"
README_PICTURES = ("main-window", "compare", "adapters", "exercises", "memory-at-scale", "lesson-presentation")


def take_readme(folder: str | Path, steps: int = 60, report: Callable[[Path], None] | None = None) -> list[Path]:
    """Every picture the README shows, into `folder` (README_PICTURES + .png): one fresh window each."""
    folder = Path(folder)
    shots = {"main-window": _main_window, "compare": _compare, "adapters": _adapters, "exercises": _exercises,
             "memory-at-scale": _memory_at_scale, "lesson-presentation": _lesson_presentation}
    written = []
    for name in README_PICTURES:
        app = _app()
        path = shots[name](app, folder / f"{name}.png", steps)
        written.append(path)
        if report is not None:
            report(path)
    return written


def _main_window(app, path: Path, steps: int) -> Path:
    return take(path, steps=steps)


def _compare(app, path: Path, steps: int) -> Path:
    """The family on word-order: the board fills as each method finishes."""
    window = _window(DEFAULT_SIZE, None, "lora")
    window.on_dataset_choice("word-order")
    window.controller.set_training(steps=steps)
    window.docks.show_dock("compare")
    window.docks.board.run_family()
    _wait(app, lambda: not window.docks.board.running, TIMEOUT_S)
    return _grab(app, window, path)


def _adapters(app, path: Path, steps: int) -> Path:
    """Two task adapters on one frozen base, the second active."""
    window = _window(DEFAULT_SIZE, None, "lora")
    window.docks.show_dock("adapters")
    lab = window.docks.lab
    for method, task in (("lora", "intents"), ("adapter", "sentiment")):
        name = lab.add(method, task)
        if name is None or not lab.train(name, steps):
            raise RuntimeError(f"the Adapters panel refused {method} on {task}")
        _wait(app, lambda: not lab.busy(), TIMEOUT_S)
    return _grab(app, window, path)


def _exercises(app, path: Path, steps: int) -> Path:
    """The seed's exercises, the third (parameter count against bottleneck width) set up."""
    window = _window(DEFAULT_SIZE, None, None)
    window.docks.show_dock("exercises")
    window.docks.exercises_wiring.set_up(3)
    return _grab(app, window, path)


def _memory_at_scale(app, path: Path, steps: int) -> Path:
    """The 4-bit method (QLoRA) on Llama-3-70B on the meta device: the memory of one training step."""
    from ..core.methods import METHODS

    four_bit = next((name for name, method in METHODS.items() if method.quantizes_base), None)
    window = _window(DEFAULT_SIZE, "llama-3-70b", four_bit)
    window.docks.show_dock("memory")
    return _grab(app, window, path)


def _lesson_presentation(app, path: Path, steps: int) -> Path:
    """A shipped lesson (word order: "limited transformation power") on a 1280x720 projector, in presentation
    mode, trained a little."""
    from .window.lessons import open_shipped_lesson

    window = _window((1280, 720), None, None)
    if not open_shipped_lesson(window, LESSON_SHOWN):
        raise RuntimeError(f"the shipped lesson {LESSON_SHOWN} did not open")
    window.presentation.set(True)
    window.controller.set_training(steps=max(1, steps))
    _train(app, window, steps)
    return _grab(app, window, path)


# ---- building blocks -------------------------------------------------------------------------------
TIMEOUT_S = 600


def _app():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings

    from .app import make_app

    app = make_app([])
    settings_dir = tempfile.mkdtemp(prefix="peft-studio-shot-")  # the user's geometry and hints stay untouched
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, settings_dir)
    QSettings().setValue("hints/first_run_done", True)
    return app


def _window(size: tuple[int, int], base: str | None, method: str | None,
            sentence: str = "I was charged twice for my order"):
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
    window.resize(*size)
    window.show()
    window.inference.entry.setText(sentence)
    return window


@contextlib.contextmanager
def _no_dialogs() -> Iterator[list[str]]:
    """Offscreen, a modal dialog would wait for ever: while a shot is taken, each one becomes a failure."""
    from . import plain
    from .window import errors_dialog

    failures: list[str] = []

    def collect(box) -> int:
        failures.append(f"{box.windowTitle()}: {box.text()}")
        return 0

    saved = plain.show_box, errors_dialog._present
    plain.show_box = errors_dialog._present = collect
    try:
        yield failures
    finally:
        plain.show_box, errors_dialog._present = saved


def _wait(app, done: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)


def _train(app, window, steps: int) -> None:
    if steps > 0:
        window.runner.play_pause()
        _wait(app, lambda: not window.runner.active, TIMEOUT_S)
        window.runner.stop_and_wait()


def _grab(app, window, path: str | Path) -> Path:
    for _ in range(5):
        app.processEvents()
    window.refresh_diagram()
    if window.view.auto_fit:
        window.view.fit()
    app.processEvents()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = window.grab()
    window.close()
    if not image.save(str(path), "PNG"):
        from ..core.errors import OutputError

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
    take_readme(args[0] if args else "resources/screenshots", report=print)
    return 0


if __name__ == "__main__":
    sys.exit(main())
