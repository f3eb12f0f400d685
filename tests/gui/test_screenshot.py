"""`peft-studio screenshot` renders the real window (worker training included) to a PNG: the README's picture."""

from __future__ import annotations

import os
import subprocess
import sys

from PySide6.QtGui import QImage

from peft_studio.cli import main


def test_the_screenshot_command_writes_the_window_at_the_asked_size(tmp_path):
    target = tmp_path / "slide.png"
    result = subprocess.run([sys.executable, "-m", "peft_studio.cli", "screenshot", str(target), "--size", "1280x720",
                             "--presentation", "--method", "adapter", "--base", "seed-pooled", "--steps", "5"],
                            capture_output=True, text=True, timeout=180,
                            env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert result.returncode == 0, result.stderr
    image = QImage(str(target))
    assert not image.isNull() and (image.width(), image.height()) == (1280, 720)
    # the window really trained: the large last-values line is drawn (not a blank plot area)
    assert len({image.pixel(x, y) for x in range(0, 1280, 16) for y in range(0, 720, 16)}) > 20


def test_a_bad_screenshot_size_is_a_one_line_error(capsys, tmp_path):
    assert main(["screenshot", str(tmp_path / "x.png"), "--size", "big"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --size must be WIDTHxHEIGHT") and err.count("\n") == 1
