"""`python -m peft_studio.gui.screenshot resources/screenshot.png`: the README's picture, made for real.

Builds the window offscreen at 1600x1000 (unless a platform is already chosen), selects LoRA on
`tiny`, trains about 60 steps in the worker, pauses, and saves `window.grab()`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def take(path: str | Path, steps: int = 60, size: tuple[int, int] = (1600, 1000), method: str = "lora") -> Path:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from .app import make_app

    app = make_app([])
    from .window import MainWindow

    window = MainWindow()
    window.controller.set_method(method)
    window.controller.set_training(steps=steps)
    window.resize(*size)
    window.show()
    app.processEvents()
    window.inference.entry.setText("I was charged twice for my order")
    window.runner.play_pause()
    deadline = time.monotonic() + 120
    while window.runner.active and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    window.runner.stop_and_wait()
    for _ in range(5):
        app.processEvents()
    window.view.fit()
    hovered = window.scene.site_items.get("layers.0.attn.v")
    if hovered is not None:
        window.scene.mark({"site:layers.0.attn.v"})
    app.processEvents()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not window.grab().save(str(path)):
        raise OSError(f"{path}: could not write the screenshot")
    window.close()
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = args[0] if args else "resources/screenshot.png"
    print(take(target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
