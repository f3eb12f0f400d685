"""Data dialog, method form + card, plots, inference, exports."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage


def test_bad_file_gives_a_dialog_and_keeps_the_previous_dataset(window, tmp_path, errors):
    bad = tmp_path / "broken.csv"
    bad.write_text("text,category\nhello there,a\n")
    assert not window.files.open_dataset(bad, "text", "label")
    assert errors and errors[0][1].startswith("broken.csv") or "broken.csv" in errors[0][1]
    assert window.controller.dataset.name == "intents"
    assert window.data_box.currentText() == "intents"


def test_a_good_file_loads_with_chosen_columns(window, tmp_path, errors):
    good = tmp_path / "mine.csv"
    rows = "\n".join(f"sentence {i} about {'cats' if i % 2 else 'dogs'},{'cat' if i % 2 else 'dog'}"
                     for i in range(20))
    good.write_text("words,animal\n" + rows + "\n")
    assert window.files.open_dataset(good, "words", "animal")
    assert not errors
    assert window.controller.dataset.label_names == ("dog", "cat")  # first appearance: row 0 is about dogs
    assert window.scene.block_items["head"].title.endswith("32→2")


def test_missing_pretrained_base_is_a_dialog_and_tiny_stays(window, errors, tmp_path):
    window.base_box.addItem(str(tmp_path / "no-such-checkout"))
    window.base_box.setCurrentIndex(window.base_box.count() - 1)
    window.base_box.activated.emit(window.base_box.count() - 1)
    assert window.controller.wait_for_builds()  # a checkpoint folder is read off the GUI thread
    assert errors and errors[-1][0] == "This base cannot be used" and "no such folder" in errors[-1][1]
    assert window.controller.setup.base == "tiny"
    assert window.base_box.currentText() == "tiny"


def test_method_form_is_generated_and_the_count_updates_live(window):
    window.controller.set_method("adapter")
    form = window.form
    assert set(form.editors) == {"freeze_head", "bottleneck", "placement", "layers", "targets", "nonlinearity", "init",
                                 "style"}
    assert form.editors["bottleneck"].maximum() == 4096
    assert "2 x (32x16 + 16 + 16x32 + 32)" in window.card.browser.toPlainText()
    form.editors["bottleneck"].setValue(4)  # the seed's exercise 3: change the bottleneck, watch the count
    count = 2 * (2 * 32 * 4 + 4 + 32)
    assert window.controller.experiment.method_parameter_count() == count
    assert f"{count:,} trainable" in window.card.count.text()
    form.editors["placement"].setCurrentText("both")
    assert window.controller.experiment.method_parameter_count() == 2 * count


def test_bad_typed_option_is_a_dialog_and_the_model_stays(window, errors):
    window.form.editors["targets"].setText("nope")
    window.form.editors["targets"].editingFinished.emit()
    assert errors and "nope" in errors[-1][1]
    assert window.form.editors["targets"].text() == "q,v"


def test_plots_take_100k_points_and_draw_a_downsampled_few(window):
    plots = window.plots
    for step in range(100_000):
        plots.add({"step": step, "loss": 1.0 / (step + 1), "accuracy": 0.5, "val_loss": None})
    plots.refresh()
    window.repaint()
    assert plots.point_count() == 100_000
    drawn_x, _ = plots.curves["loss"].settled.curve.getData()  # what Qt strokes: peak-downsampled to the pixels
    assert 0 < len(drawn_x) <= 10 * plots.loss_plot.width()  # pyqtgraph: <= 5 (min, max) pairs a pixel
    plots.log_y.setChecked(True)
    assert plots.loss_plot.getPlotItem().ctrl.logYCheck.isChecked()


def test_a_live_curve_adds_one_piece_a_frame_merges_them_rarely_and_shows_every_point(window):
    plots = window.plots
    curve = plots.curves["loss"]
    settled_updates = []
    original = curve.settled.setData
    curve.settled.setData = lambda *a, **k: (settled_updates.append(len(a[0])), original(*a, **k))[1]
    frames = 2 * curve.MERGE_PIECES + 5
    for step in range(frames):  # one step a frame: a slow run, the most pieces
        plots.add({"step": step, "loss": 2.0 / (step + 1), "accuracy": 0.5, "val_loss": None})
        plots.refresh()
        assert 0 < len(curve.pieces) <= curve.MERGE_PIECES or settled_updates[-1] == step + 1
    # the settled part is redrawn when the pieces merge into it, not once per frame (0: the new run's clear)
    assert settled_updates == [0] + [k * (curve.MERGE_PIECES + 1) for k in (1, 2)]
    expected_x, expected_y = plots.current["loss"].view()
    for log in (False, True, False):
        plots.log_y.setChecked(log)
        xs, ys = curve.getData()
        np.testing.assert_array_equal(xs, expected_x)
        np.testing.assert_allclose(ys, expected_y, rtol=1e-9)


def test_a_frame_with_many_new_points_goes_straight_to_the_settled_part(window):
    plots = window.plots
    curve = plots.curves["loss"]
    for step in range(curve.MERGE_POINTS + 1):  # a fast run's frame, or a run shown after it ended
        plots.add({"step": step, "loss": 1.0, "accuracy": 0.5, "val_loss": None})
    plots.refresh()
    assert curve.pieces == [] and len(curve.settled.getOriginalDataset()[0]) == curve.MERGE_POINTS + 1
    plots.add({"step": curve.MERGE_POINTS + 1, "loss": 0.5, "accuracy": 0.5, "val_loss": None})
    plots.refresh()
    assert len(curve.pieces) == 1  # the next frame's point: a piece from the settled part's last point
    xs, ys = curve.getData()
    assert len(xs) == curve.MERGE_POINTS + 2 and ys[-1] == 0.5


def test_the_plot_legend_and_log_toggle_are_on_screen(window):
    plots = window.plots
    assert plots.log_y.isVisibleTo(window) and plots.legend.isVisibleTo(window)
    assert "validation" in plots.legend.text() and "previous run" in plots.legend.text()
    plots.log_y.click()
    assert plots.loss_plot.getPlotItem().ctrl.logYCheck.isChecked()


def test_exports(window, tmp_path):
    window.plots.add({"step": 0, "loss": 1.5, "accuracy": 0.25, "val_loss": 1.6, "val_accuracy": 0.2})
    window.plots.add({"step": 1, "loss": 1.2, "accuracy": 0.5, "val_loss": None})
    csv_path = window.files.export_to(tmp_path / "curve.csv")
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "step,loss,accuracy,val_loss,val_accuracy"
    assert lines[1].startswith("0,1.5,0.25,1.6,0.2") and lines[2].startswith("1,1.2,0.5,,")
    png = window.files.export_to(tmp_path / "plots.png")
    assert not QImage(str(png)).isNull()
    svg = window.files.export_to(tmp_path / "diagram.svg")
    assert "<svg" in svg.read_text()[:2000]


def test_inference_box_shows_label_and_probabilities(window):
    window.inference.entry.setText("where is my package")
    text = window.inference.result.text()
    assert text.startswith("→ ")
    bars = [b for b in window.inference._bar_widgets if b.isVisibleTo(window.inference)]
    assert len(bars) == window.controller.dataset.num_labels
    assert abs(sum(b.value() for b in bars) - 1000) <= len(bars)


def test_in_log_mode_a_new_piece_below_the_range_is_settled_so_the_auto_range_shows_it(window, qtbot):
    plots = window.plots
    plots.log_y.setChecked(True)
    curve = plots.curves["loss"]
    for step in range(3):
        plots.add({"step": step, "loss": 1.0, "accuracy": 0.5, "val_loss": None})
        plots.refresh()
    curve.settle()
    window.repaint()
    low, _ = plots.loss_plot.getViewBox().viewRange()[1]
    plots.add({"step": 3, "loss": 10.0 ** (low - 3), "accuracy": 0.5, "val_loss": None})  # three decades below
    plots.refresh()
    assert curve.pieces == [] and len(curve.settled.getOriginalDataset()[0]) == 4
    qtbot.waitUntil(lambda: plots.loss_plot.getViewBox().viewRange()[1][0] <= low - 3, timeout=5000)
