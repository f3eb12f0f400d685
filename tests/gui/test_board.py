"""The comparison board and the memory ledger as standalone widgets."""

from __future__ import annotations

import csv

import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from peft_studio.core.data import load_builtin
from peft_studio.core.memory.ledger import estimate_ledger, fit_activations, measure_ledger
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.compare import family_records, run_family
from peft_studio.core.runs.run_store import RunStore
from peft_studio.core.runs.train import TrainSettings
from peft_studio.gui import plain

METHODS = ["lora", "ia3", "head-only"]


@pytest.fixture(scope="module")
def stored_runs(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared machine: no OpenMP spin-waiting
    try:
        store = RunStore(tmp_path_factory.mktemp("runs"))
        records = family_records(run_family("tiny", load_builtin("word-order"), TrainSettings(steps=4, eval_every=2),
                                            methods=METHODS, store=store))
    finally:
        torch.set_num_threads(threads)
    return store, records


@pytest.fixture
def board(qtbot, stored_runs):
    from peft_studio.gui.panels.board import BoardWidget

    store, records = stored_runs
    widget = BoardWidget(records, store=None)
    qtbot.addWidget(widget)
    widget.resize(1200, 700)
    widget.show()
    return widget


def _column(key: str) -> int:
    from peft_studio.gui.panels.board import TABLE_COLUMNS

    return [c.key for c in TABLE_COLUMNS].index(key)


def _items_per_run(run) -> int:
    """Train and validation curves, plus the sparse markers of a method whose style has a marker."""
    from peft_studio.gui.panels.palette import curve_style

    return 2 + (1 if curve_style(run.method).symbol else 0)


def test_board_shows_one_row_per_ticked_run_and_marks_the_best(board, stored_runs):
    _, records = stored_runs
    assert board.table.rowCount() == len(records)
    assert [board.table.item(i, 0).text() for i in range(len(records))] == METHODS  # run order until sorted
    marked = board.best_cells()
    assert ("head-only", "trainable_params") in marked and ("head-only", "training_memory") in marked
    # a timed column with one value (only LoRA merges) beats nothing: no "best" for it
    assert not any(key == "added_latency_merged_ms" for _, key in marked)
    assert not any(key in ("method", "where") for _, key in marked)
    assert len(board.loss_plot.getPlotItem().listDataItems()) == sum(_items_per_run(r) for r in records)
    board.run_list.item(1).setCheckState(Qt.CheckState.Unchecked)
    assert board.table.rowCount() == len(records) - 1
    assert [r.method for r in board.selected_runs()] == ["lora", "head-only"]
    assert len(board.accuracy_plot.getPlotItem().listDataItems()) == sum(_items_per_run(r) for r in records
                                                                        if r.method != "ia3")


def test_lens_columns_show_each_runs_numbers_and_say_why_a_dash(board, stored_runs):
    _, records = stored_runs
    by = {r.method: r for r in records}
    rows = {board.table.item(i, 0).text(): i for i in range(board.table.rowCount())}
    rank, forgetting = _column("effective_rank"), _column("forgetting")
    assert board.table.item(rows["lora"], rank).text() == f"{by['lora'].lens_effective_rank:.3g}"
    assert board.table.item(rows["head-only"], rank).text() == "—"
    assert board.table.item(rows["head-only"], rank).toolTip() == plain.tip(by["head-only"].lens_note)
    assert board.table.item(rows["ia3"], forgetting).text() == f"{by['ia3'].forgetting:.3g}"
    points = board.forgetting_plot.getPlotItem().listDataItems()
    assert sorted(float(p.getData()[1][0]) for p in points) == sorted(r.forgetting for r in records)


def test_method_column_is_pinned_and_where_is_its_tooltip(board, stored_runs):
    _, records = stored_runs
    headers = [board.table.horizontalHeaderItem(j).text() for j in range(board.table.columnCount())]
    assert headers[0] == "method" and "where the trainable part sits" not in headers
    pinned = board.table.pinned
    assert pinned.model() is board.table.model()
    assert [pinned.isColumnHidden(j) for j in range(board.table.columnCount())] == \
        [False] + [True] * (board.table.columnCount() - 1)
    for i, record in enumerate(records):
        assert board.table.item(i, 0).toolTip() == plain.tip(f"{record.method}: {record.where}")  # file text: plain
    board.resize(420, 500)  # too narrow for the numbers: they scroll, the method column stays
    board.table.horizontalScrollBar().setValue(board.table.horizontalScrollBar().maximum())
    assert board.table.horizontalScrollBar().value() > 0
    assert pinned.isVisible() and pinned.geometry().left() <= board.table.frameWidth() + 1
    assert pinned.width() == board.table.columnWidth(0)


def test_curve_styles_are_distinct_for_every_method_and_forty_more(qtbot):
    from peft_studio.core.methods import METHODS, register_method, unregister_method
    from peft_studio.core.methods.lora import LoraMethod
    from peft_studio.gui.panels.palette import curve_style

    added = []
    try:
        for i in range(40):  # the family is about to grow: forty more reparametrisations beside LoRA
            method = LoraMethod()
            method.name = f"lora-variant-{i}"
            register_method(method)
            added.append(method.name)
        styles = {name: curve_style(name) for name in METHODS}
        looks = [(s.colour, s.dash, s.symbol) for s in styles.values()]
        assert len(set(looks)) == len(looks)
        assert styles["head-only"].colour != styles["ln-tuning"].colour  # both were blue before
        assert styles["lora"].colour == styles["dora"].colour  # same place (beside a Linear): same colour
        assert styles["prompt-tuning"].colour != styles["lora"].colour
    finally:
        for name in added:
            unregister_method(name)


def test_one_budget_per_board(board, stored_runs):
    from dataclasses import replace

    _, records = stored_runs
    longer = [replace(r, run_id=r.run_id + "-300", settings={**r.settings, "steps": 300}) for r in records]
    board.set_runs([*records, *longer])
    assert board.comparison.budgets() == [4, 300]
    assert {r.settings["steps"] for r in board.selected_runs()} == {300}  # the newest budget
    assert board.table.rowCount() == len(records)
    board.budget_box.setCurrentIndex(0)
    board.budget_box.activated.emit(0)
    assert {r.settings["steps"] for r in board.selected_runs()} == {4} and board.table.rowCount() == len(records)
    assert "4 steps per run" in board.footer.text()


def test_board_sorts_by_value_not_text(board):
    board.table.sortItems(_column("adapter_bytes"), Qt.SortOrder.DescendingOrder)
    shown = [board.table.item(i, 0).text() for i in range(board.table.rowCount())]
    by_bytes = sorted(board.selected_runs(), key=lambda r: r.adapter_bytes, reverse=True)
    assert shown == [r.method for r in by_bytes]
    board.add_run(board.runs()[0])  # a live family run appends: the sort order stays
    assert board.table.rowCount() == 4
    assert board.table.horizontalHeader().sortIndicatorSection() == _column("adapter_bytes")


def test_family_button_emits_run_then_stop(board, qtbot):
    with qtbot.waitSignal(board.runFamilyRequested, timeout=1000):
        board.family_button.click()
    board.set_family_running(True)
    assert board.family_button.text() == "Stop"
    with qtbot.waitSignal(board.stopFamilyRequested, timeout=1000):
        board.family_button.click()


def test_footer_counts_twenty_adapters_for_the_current_method(board):
    board.set_current_method("ia3")
    assert "20 tasks with ia3" in board.footer.text()


def test_exports_open(board, tmp_path):
    png = board.export_png(tmp_path / "board.png")
    image = QImage(str(png))
    assert not image.isNull() and image.width() >= 600
    svg = board.export_svg(tmp_path / "board.svg").read_text()
    vectors = svg.count("<path") + svg.count("<polyline")  # dashed curves come out as polylines
    assert "<svg" in svg and "</svg>" in svg and vectors > 10  # drawn as vectors, not one bitmap
    rows = list(csv.DictReader(board.export_csv(tmp_path / "board.csv").open()))
    assert [r["method"] for r in rows] == [r.method for r in board.selected_runs()]
    assert all(float(r["training_memory"]) > 0 for r in rows)
    board.resize(500, 360)  # a small board scrolls its table; the PNG still holds every row and column
    small = QImage(str(board.export_png(tmp_path / "small.png")))
    table = board._table_image(0)
    row_height = board.table.fontMetrics().height() + 8
    assert table.height() == row_height * (board.table.rowCount() + 1) + 1
    assert small.height() >= board.plots.height() + table.height()
    assert table.width() > board.table.viewport().width()  # wider than the scrolled view: nothing cut


def test_board_reads_and_deletes_from_the_store(qtbot, stored_runs, tmp_path):
    from peft_studio.gui.panels.board import BoardWidget

    store, records = stored_runs
    copy = RunStore(tmp_path / "copy")
    for record in records:
        copy.save(record)
    widget = BoardWidget(store=copy)
    qtbot.addWidget(widget)
    assert widget.table.rowCount() == 0 and "No runs" in widget.footer.text()
    assert widget.reload()  # on a worker thread
    qtbot.waitUntil(lambda: not widget.loading, timeout=10_000)
    assert [r.run_id for r in widget.runs()] == [r.run_id for r in records]
    widget.run_list.setCurrentRow(0)
    widget.delete_highlighted()
    assert [r.run_id for r in copy.list()] == [r.run_id for r in records[1:]]
    assert widget.table.rowCount() == len(records) - 1


def test_ledger_sliders_move_the_estimate(qtbot):
    from peft_studio.gui.panels.ledger import LedgerWidget

    experiment = Experiment(Setup("tiny", "prompt-tuning"), load_builtin("intents"))
    widget = LedgerWidget()
    qtbot.addWidget(widget)
    assert not widget.batch_slider.isEnabled()
    widget.set_experiment(experiment, batch_size=16)
    first = widget.current_estimate()
    assert (first.batch_size, first.seq_len) == (16, experiment.train_ids.shape[1])
    assert set(widget.bars) == {"frozen", "trainable", "gradients", "optimizer", "activations", "logits"}
    assert "L^2" in widget.details.text()
    with qtbot.waitSignal(widget.estimateChanged, timeout=1000) as blocker:
        widget.batch_slider.setValue(32)
    doubled = blocker.args[0]
    assert doubled.batch_size == 32 and doubled.activations == pytest.approx(2 * first.activations, rel=0.02)
    assert doubled.trainable == first.trainable and doubled.frozen == first.frozen
    length = first.seq_len
    fit = fit_activations(experiment)
    at = {}
    for times in (1, 2, 3):
        widget.length_box.setValue(times * length)
        at[times] = widget.current_estimate().activations
        assert at[times] == fit.bytes(32, times * length)
    assert at[3] - at[2] > at[2] - at[1] > 0  # attention's L x L scores: faster than linear in L
    heights = widget.bars["activations"].opts["height"]
    assert list(heights) == [widget.current_estimate().activations]


def test_ledger_takes_plain_data_and_shows_the_measurement_beside(qtbot):
    from peft_studio.gui.panels.ledger import LedgerWidget

    experiment = Experiment(Setup("tiny", "head-only"), load_builtin("intents"))
    fit = fit_activations(experiment)
    estimate = estimate_ledger(experiment, 16, fit=fit)
    measured = measure_ledger(experiment, 16)
    widget = LedgerWidget(estimate, fit, measured)
    qtbot.addWidget(widget)
    assert list(widget.bars["activations"].opts["height"]) == [estimate.activations, measured.activations]
    assert "measured" in widget.details.text()
    widget.set_measured(None)
    assert len(widget.bars["activations"].opts["height"]) == 1
