"""The rank grid: a method that reallocates ranks while training (AdaLoRA) reports them each step, and the window
shows them live as layers x targets; other methods never open it."""

from __future__ import annotations

from peft_studio.core.data import load_builtin
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.train import TrainSettings, train
from peft_studio.gui.panels.rank_grid import RankGridPanel


def _grids(steps: int):
    options = {"init_r": 4, "target_r": 1, "tfinal": 1}
    experiment = Experiment(Setup("tiny", "adalora", options), load_builtin("intents"))
    return [e.method_state["rank_grid"] for e in train(experiment, TrainSettings(steps=steps, track_grads=False))]


def test_the_panel_draws_layers_by_targets_with_the_live_ranks(qtbot):
    panel = RankGridPanel()
    qtbot.addWidget(panel)
    first, last = (grids := _grids(4))[0], grids[-1]
    panel.show_grid(first)
    assert panel.table.rowCount() == 2 and panel.table.columnCount() == 2  # tiny: 2 layers, q and v
    assert [panel.table.horizontalHeaderItem(c).text() for c in range(2)] == ["q", "v"]
    assert {panel.table.item(r, c).text() for r in range(2) for c in range(2)} == {"4/4"}  # step 0: nothing pruned
    panel.show_grid(last)  # after the final pattern: target_r = 1 per Linear on average
    live = [int(panel.table.item(r, c).text().split("/")[0]) for r in range(2) for c in range(2)]
    assert sum(live) <= 4 and panel.grid.total == sum(live)
    assert "budget 4" in panel.summary.text()


def test_the_window_opens_the_grid_only_for_a_method_that_reports_one(window, qtbot):
    window.controller.set_training(steps=3)
    window.runner.play_pause()
    qtbot.waitUntil(lambda: window.runner.state == "idle", timeout=30_000)
    assert window.rank_dock.isHidden()  # LoRA: no ranks to show
    assert window.controller.set_method("adalora", {"init_r": 4, "target_r": 2})
    window.runner.play_pause()
    qtbot.waitUntil(lambda: window.runner.state == "idle", timeout=30_000)
    assert not window.rank_dock.isHidden() and window.rank_grid.grid is not None
    assert window.rank_grid.grid.init_r == 4
