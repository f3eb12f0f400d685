"""View > Family map: the map of every method on the current base, computed off the GUI thread; a click (or Enter on
the focused tile) is one undoable method switch; readable at 1280x720 in presentation mode; the screenshot command
writes it."""

from __future__ import annotations

import os
import subprocess
import sys

from docks_helpers import docks_fixture  # noqa: F401 - the `docks` fixture
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from peft_studio.cli import main
from peft_studio.core.methods import METHODS


def _opened(window, docks, qtbot):
    docks.toggles["family-map"].trigger()
    panel = docks.map_panel
    assert docks.family_map.isVisible() and docks.family_map.isFloating()
    qtbot.waitUntil(lambda: not panel.running and len(panel.map) == len(METHODS), timeout=120_000)
    return panel


def test_a_window_computes_no_map_until_the_map_is_shown(docks, window, qtbot):
    qtbot.wait(50)  # the window has settled: a floating dock shown even for a moment would have started the map
    assert docks.built("family-map") is None and not window.controller.jobs.running("family-map")
    assert not docks.family_map.isVisible() and docks.family_map.isFloating()


def test_the_map_opens_and_a_click_switches_the_method_and_undo_returns(docks, window, qtbot):
    c = window.controller
    before = (c.setup.method, dict(c.setup.options))
    panel = _opened(window, docks, qtbot)
    assert (c.setup.method, dict(c.setup.options)) == before and not c.can_undo  # computing it changed nothing
    assert {t.tile.method for t in panel.canvas.tiles()} == set(METHODS)
    assert panel.tile(before[0]).current
    target = next(t for t in panel.map if t.applies and t.method != before[0] and t.fitted is False)
    qtbot.mouseClick(panel.tile(target.method), Qt.MouseButton.LeftButton)
    assert c.wait_for_builds() and c.setup.method == target.method and panel.tile(target.method).current
    assert c.undo() and c.wait_for_builds() and c.setup.method == before[0]
    keyed = next(t for t in panel.map if t.applies and t.method not in (before[0], target.method))
    tile = panel.tile(keyed.method)
    tile.setFocus()
    qtbot.keyClick(tile, Qt.Key.Key_Return)
    assert c.wait_for_builds() and c.setup.method == keyed.method
    assert not panel.running  # a method switch keeps the map: same base, same figures


def test_sorting_reorders_the_tiles_and_presentation_fits_1280x720(docks, window, qtbot, tmp_path):
    panel = _opened(window, docks, qtbot)
    panel.sort_box.setCurrentIndex(panel.sort_box.findData("trainable"))
    first_group = panel.canvas.sections[0][1]
    counts = [t.tile.trainable for t in first_group if t.tile.applies]
    assert counts == sorted(counts)
    window.presentation.set(True)
    docks.family_map.resize(1280, 720)
    qtbot.wait(50)
    tile = panel.canvas.tiles()[0]
    assert tile.metrics.presentation and tile.width() >= 220  # projector sizes
    assert docks.family_map.width() <= 1280 and docks.family_map.height() <= 720
    image = docks.family_map.grab()
    out = tmp_path / "map.png"
    assert image.save(str(out))
    picture = QImage(str(out))
    assert (picture.width(), picture.height()) == (1280, 720)
    assert len({picture.pixel(x, y) for x in range(0, 1280, 16) for y in range(0, 720, 16)}) > 20


def test_the_screenshot_command_writes_the_family_map(tmp_path, capsys):
    target = tmp_path / "map.png"
    result = subprocess.run([sys.executable, "-m", "peft_studio.cli", "screenshot", "--family-map", "--base", "tiny",
                             str(target)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert result.returncode == 0, result.stderr
    image = QImage(str(target))
    assert (image.width(), image.height()) == (1280, 720)
    assert main(["screenshot", "--family-map", "--method", "lora", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.startswith("error: --method")
    assert main(["screenshot", "--family-map", str(tmp_path / "x.txt")]) == 2
    assert "PNG" in capsys.readouterr().err


def test_a_shapes_only_base_is_mapped_off_the_gui_thread_with_no_latency(docks, window, qtbot):
    c = window.controller
    assert c.set_base("llama-3-8b") and c.wait_for_builds()
    docks.toggles["family-map"].trigger()
    panel = docks.map_panel
    assert panel.running  # the window returned at once: the map is computed on a worker
    qtbot.waitUntil(lambda: panel.ready, timeout=120_000)
    applied = [t for t in panel.map if t.applies]
    assert applied and all(t.latency_ms is None and "meta device" in t.latency_note for t in applied)
    assert "meta device" in panel.tile(applied[0].method).toolTip()
