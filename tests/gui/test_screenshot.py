"""The README's screenshot is produced by a script in the repo."""

from __future__ import annotations

import subprocess
import sys

from PySide6.QtGui import QImage


def test_screenshot_script_writes_a_full_size_png(tmp_path):
    target = tmp_path / "shot.png"
    result = subprocess.run([sys.executable, "-m", "peft_studio.gui.screenshot", str(target)],
                            capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert result.returncode == 0, result.stderr
    image = QImage(str(target))
    assert (image.width(), image.height()) == (1600, 1000)
    assert not image.isNull()
