"""The Lens dock: the figures core/lenses computes for the window's model, drawn and exported; never while a run
trains (Play waits for the look), and a shapes-only base says there is nothing to look at."""

from __future__ import annotations

import csv

import torch
from docks_helpers import docks_fixture  # noqa: F401 - the `docks` fixture

from peft_studio.core.lenses.report import lens_report


def _trained_lora(window) -> None:
    """LoRA on q,v of the tiny base with B moved off zero, as after training (ΔW = (alpha/r) B A != 0)."""
    c = window.controller
    assert c.set_method("lora", {"r": 2, "targets": "q,v"}) and c.wait_for_builds()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in c.experiment.model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator))


def test_look_shows_the_cores_figures_and_exports_every_number(docks, window, qtbot, tmp_path):
    _trained_lora(window)
    panel = docks.lens_panel
    assert panel.look()
    qtbot.waitUntil(lambda: not panel.job.running, timeout=60_000)
    expected = lens_report(window.controller.experiment, window.inference.entry.text().strip() or None)
    assert [f.title for f in panel.figures] == [f.title for f in expected]
    assert [panel.figure_list.item(i).text() for i in range(panel.figure_list.count())] == [f.title for f in expected]
    first = panel.figures[0]
    assert first.kind == "delta-w" and first.numbers["effective_rank"] <= 2.0 + 1e-6  # rank-2 update
    assert panel.plot.getPlotItem().items, "the ΔW heatmap is drawn"
    assert "effective rank" in panel.numbers.text()
    out = panel.export_csv(tmp_path / "lens.csv")
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    exported = {(r["title"], r["name"]): float(r["value"]) for r in rows}
    assert exported == {(f.title, k): float(v) for f in expected for k, v in f.numbers.items()}


def test_play_waits_for_the_look_and_the_look_waits_for_the_run(docks, window, qtbot):
    _trained_lora(window)
    panel = docks.lens_panel
    assert panel.look()
    window.play_pause()  # refused while the lens reads the model
    assert not window.runner.active
    qtbot.waitUntil(lambda: not panel.job.running, timeout=60_000)
    window.play_pause()
    qtbot.waitUntil(lambda: window.runner.active, timeout=10_000)
    assert not panel.look() and "Stop the run first" in panel.status.text()
    window.stop()
    qtbot.waitUntil(lambda: not window.runner.active, timeout=30_000)


def test_a_shapes_only_base_has_nothing_to_look_at(docks, window, qtbot):
    c = window.controller
    assert c.set_base("llama-3-8b") and c.wait_for_builds()
    assert not docks.lens_panel.look() and "nothing to look at" in docks.lens_panel.status.text()


def test_png_export_is_the_figure_shown_with_its_title(docks, window, qtbot, tmp_path):
    from PySide6.QtGui import QImage

    _trained_lora(window)
    panel = docks.lens_panel
    docks.show_dock("lens")
    assert panel.look()
    qtbot.waitUntil(lambda: not panel.job.running, timeout=60_000)

    def exported(name: str) -> tuple[QImage, QImage]:
        image = QImage(str(panel.export_png(tmp_path / name))).convertToFormat(QImage.Format.Format_RGB32)
        body = panel.detail.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
        return image, body

    image, body = exported("delta.png")
    band = image.height() - body.height()  # the title above the figure as the dock draws it
    assert image.width() == body.width() and band > 10
    assert image.copy(0, band, body.width(), body.height()) == body
    title = image.copy(0, 0, image.width(), band)
    assert any(title.pixel(x, y) & 0xFFFFFF != 0xFFFFFF for x in range(title.width()) for y in range(band))
    panel.figure_list.setCurrentRow(len(panel.figures) - 1)  # forgetting: one number, nothing drawn
    other, other_body = exported("forgetting.png")
    assert other.copy(0, band, body.width(), body.height()) == other_body != body


def _train_until(window, qtbot, done) -> None:
    """Play a long run until `done()`, then stop it and wait for the thread."""
    assert window.controller.set_training(steps=100_000, eval_every=50)
    window.play_pause()
    try:
        qtbot.waitUntil(done, timeout=60_000)
    finally:
        window.stop()
        qtbot.waitUntil(lambda: not window.runner.active, timeout=30_000)


def test_the_lens_is_live_while_a_run_trains_and_forgetting_waits_for_the_stop(docks, window, qtbot):
    from peft_studio.gui.docks.lens import FORGETTING_LATER

    c = window.controller
    assert c.set_method("lora", {"r": 2, "targets": "q,v"}) and c.wait_for_builds()
    panel = docks.lens_panel
    docks.show_dock("lens")
    seen = {}

    def live_twice() -> bool:
        if panel.live_updates >= 2:  # looked at while the run is still going
            seen.update(status=panel.status.text(), figures=list(panel.figures), on=panel.live_on)
            return True
        return False

    _train_until(window, qtbot, live_twice)
    assert seen["on"] and FORGETTING_LATER in seen["status"] and "ΔW at" in seen["status"]
    delta = seen["figures"][0]
    assert delta.kind == "delta-w" and delta.site == panel.live.watched
    assert 0 < delta.numbers["effective_rank"] <= 2 + 1e-6 and delta.numbers["numerical_rank"] <= 2
    assert not panel.live_on  # the run stopped: no more snapshots, the look takes over
    qtbot.waitUntil(lambda: not panel.job.running and panel.figures[-1].kind == "forgetting", timeout=60_000)


def test_gains_histogram_over_training_is_live_and_stays_after_the_run(docks, window, qtbot):
    c = window.controller
    assert c.set_method("ia3", {}) and c.wait_for_builds()
    panel = docks.lens_panel
    docks.show_dock("lens")
    widths = sum(p.numel() for n, p in c.experiment.model.named_parameters() if n.endswith("ia3_scale"))

    said = []

    def history_shown() -> bool:
        said.append(panel.status.text())
        return any(f.kind == "gains-history" and f.numbers["samples"] >= 3 for f in panel.figures)

    _train_until(window, qtbot, history_shown)
    assert "gains over training" in said[-1] and "IA3 gains at" in said[-1]  # IA3's own lens, live
    qtbot.waitUntil(lambda: not panel.job.running, timeout=60_000)
    (history,) = [f for f in panel.figures if f.kind == "gains-history"]  # kept beside the look's figures
    assert all(sum(row) == widths for row in history.arrays["history"])
    assert history.arrays["steps"] == sorted(history.arrays["steps"])


def test_prefix_attention_is_live_with_the_sentences_keys_drawn(docks, window, qtbot):
    """A method with its own lens shows it live: the share of attention on the prefix keys, per layer and head,
    and the key row with the Try-it sentence's own tokens."""
    import pyqtgraph as pg

    c = window.controller
    assert c.set_method("prefix-tuning", {"tokens": 3}) and c.wait_for_builds()
    window.inference.entry.setText("turn on the lights")
    panel = docks.lens_panel
    docks.show_dock("lens")
    seen = {}

    def live_prefix() -> bool:
        figures = [f for f in panel.figures if f.kind == "prefix-attention"]
        if panel.live_updates >= 2 and figures:
            seen.update(figure=figures[0], status=panel.status.text(),
                        drawn=[type(i) for i in panel.plot.getPlotItem().items],
                        rows={k: row.weights for k, row in window.scene.key_rows.items()})
            return True
        return False

    _train_until(window, qtbot, live_prefix)
    figure = seen["figure"]
    keys = [row[0] for row in figure.table]
    tokens = c.experiment.tokenizer.batch(["turn on the lights"])[1].sum().item()
    assert keys[:3] == ["prefix 1", "prefix 2", "prefix 3"] and len(keys) == 3 + tokens
    assert "attention on the prefix keys" in seen["status"] and "as of step" in seen["status"]
    assert pg.ImageItem in seen["drawn"]  # the layer x head grid
    grid = figure.arrays["share_by_layer_head"]
    assert len(grid) == c.experiment.base.num_layers and all(0 <= x <= 1 for row in grid for x in row)
    # the diagram's key rows ("L -> L + n keys") carry the same weights, layer by layer
    assert seen["rows"] == {f"layers.{layer}.attn": weights
                            for layer, weights in zip(figure.arrays["layers"], figure.arrays["key_rows"], strict=True)}
    assert all(abs(sum(weights) - 1) < 1e-4 for weights in seen["rows"].values())  # a softmax over the keys
    assert c.set_method("prefix-tuning", {"tokens": 2}) and c.wait_for_builds()
    assert all(row.weights is None for row in window.scene.key_rows.values())  # a new model: not its weights


CLOSE_LIVE = """
import os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6.QtCore import QTimer
from peft_studio.gui.app import make_app
app = make_app([])
from peft_studio.gui.window.main_window import MainWindow
w = MainWindow(); w.show()
w.docks.show_dock("lens")
w.controller.set_training(steps=100000)
QTimer.singleShot(200, w.runner.play_pause)
poll = QTimer()
poll.timeout.connect(lambda: w.docks.lens_panel.live_updates >= 1 and w.close())  # close while the lens is live
poll.start(20)
code = app.exec()
print("live", w.docks.lens_panel.live_updates)
sys.exit(code)
"""


def test_closing_while_the_lens_is_live_waits_for_its_thread(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path),
           "XDG_DATA_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", CLOSE_LIVE], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert "Destroyed while thread" not in result.stderr
    assert int(result.stdout.split()[-1]) >= 1
