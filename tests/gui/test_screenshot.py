"""`peft-studio screenshot` renders the real window (worker training included) to a PNG: the README's picture."""

from __future__ import annotations

import os
import re
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


def test_one_command_writes_every_readme_picture(tmp_path, monkeypatch, capsys):
    """`peft-studio screenshot --readme FOLDER`: each picture the README shows, from a real window. (The family run
    behind the Compare picture is cut to two methods here; the board's own tests run the whole family.)"""
    from pathlib import Path

    from peft_studio.gui.docks.compare import ComparePanel
    from peft_studio.gui.screenshot import README_PICTURES

    run_family = ComparePanel.run_family
    monkeypatch.setattr(ComparePanel, "run_family", lambda self, methods=None: run_family(self, ["lora", "head-only"]))
    assert main(["screenshot", "--readme", str(tmp_path / "shots"), "--steps", "2"]) == 0
    written = [Path(line) for line in capsys.readouterr().out.splitlines()]
    assert [p.name for p in written] == [f"{name}.png" for name in README_PICTURES]
    for path in written:
        image = QImage(str(path))
        expected = (1280, 720) if path.stem == "lesson-presentation" else (1600, 1000)
        assert (image.width(), image.height()) == expected, path.name
        assert len({image.pixel(x, y) for x in range(0, image.width(), 16) for y in range(0, image.height(), 16)}) > 20
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    shown = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert shown == [f"resources/screenshots/{name}.png" for name in README_PICTURES]
    assert all((Path(__file__).resolve().parents[2] / picture).is_file() for picture in shown)
    assert main(["screenshot"]) == 2 and "--readme" in capsys.readouterr().err
