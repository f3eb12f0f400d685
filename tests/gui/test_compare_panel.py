"""The comparison board in the studio: a family run in a worker fills it live; the ledger follows the setup."""

from __future__ import annotations

import html
from dataclasses import replace

import pytest

from peft_studio.core.runs.compare import COLUMNS, DETERMINISTIC, family_records, run_family, table_cells
from peft_studio.core.runs.run_store import RunStore
from peft_studio.gui.docks.compare import ComparePanel
from peft_studio.gui.window.controller import Controller


@pytest.fixture(autouse=True)
def no_family_outlives_its_test(monkeypatch):
    """A failing test must not destroy a panel whose worker still runs (Qt aborts the whole session then)."""
    made: list[ComparePanel] = []
    original = ComparePanel.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(ComparePanel, "__init__", init)
    yield
    for panel in made:
        assert panel.stop_and_wait(60_000)


def test_a_family_run_fills_the_board_and_is_stored(qtbot, tmp_path):
    controller = Controller()
    controller.set_training(eval_every=1)
    store = RunStore(tmp_path / "runs")
    panel = ComparePanel(controller, store)
    panel.board.steps_box.setValue(3)  # the board's own budget per method (the window's settings stay the user's)
    qtbot.addWidget(panel)
    started: list[str] = []
    threads: set[int] = set()
    panel.method_started.connect(started.append)
    panel.job.item.connect(lambda event: threads.add(event.threads) if getattr(event, "kind", "") == "start" else None)
    panel.run_family(["lora", "prefix-tuning", "head-only"])
    qtbot.waitUntil(lambda: not panel.running, timeout=120_000)
    assert started == ["lora", "prefix-tuning", "head-only"]
    assert [r.method for r in panel.board.runs()] == ["lora", "prefix-tuning", "head-only"]
    # the board shows the numbers a headless family run gives at the thread count the panel measured
    assert len(threads) == 1 and "torch thread" not in panel.status.text()
    same = replace(controller.settings, steps=3)  # the board's budget, as the panel ran it
    headless = family_records(run_family("tiny", controller.dataset, same, controller.setup.seed,
                                         ["lora", "prefix-tuning", "head-only"], threads=threads.pop()))
    keep = [j for j, column in enumerate(COLUMNS) if column.key in DETERMINISTIC]
    assert [[row[j] for j in keep] for row in table_cells(panel.board.runs())] == \
        [[row[j] for j in keep] for row in table_cells(headless)]
    assert sorted(r.method for r in store.list()) == ["head-only", "lora", "prefix-tuning"]
    assert panel.status.text() == "Family run finished."
    reopened = ComparePanel(Controller(), store)  # another start: the stored runs, read when first shown
    qtbot.addWidget(reopened)
    assert reopened.board.runs() == []
    reopened.show()  # the folder is read on a worker thread
    qtbot.waitUntil(lambda: not reopened.board.loading, timeout=10_000)
    assert sorted(r.method for r in reopened.board.runs()) == ["head-only", "lora", "prefix-tuning"]


def test_the_family_run_stops_between_steps(qtbot, tmp_path):
    controller = Controller()
    panel = ComparePanel(controller, RunStore(tmp_path / "runs"))
    panel.board.steps_box.setValue(100_000)  # the board's budget, not the window's training settings
    qtbot.addWidget(panel)
    panel.run_family(["lora", "adapter"])
    qtbot.waitUntil(lambda: panel.status.text().startswith("Training"), timeout=60_000)
    panel.stop_family()
    qtbot.waitUntil(lambda: not panel.running, timeout=60_000)
    assert panel.board.runs() == [] and panel.status.text().startswith("Stopped during 1/2 lora")


def test_the_ledger_follows_the_setup_and_measures_a_step(qtbot, tmp_path):
    controller = Controller()
    panel = ComparePanel(controller, RunStore(tmp_path / "runs"))
    qtbot.addWidget(panel)
    panel.show()  # the ledger is computed while the panel is seen
    before = panel.ledger.current_estimate()
    controller.set_method("prompt-tuning")
    after = panel.ledger.current_estimate()
    assert before is not None and after is not None and after != before
    weights = dict(controller.experiment.model.state_dict())
    assert panel.measure()
    assert all((weights[k] == v).all() for k, v in controller.experiment.model.state_dict().items())


def test_an_architecture_is_placed_not_trained_and_a_row_shows_its_method(qtbot, tmp_path):
    from peft_studio.core.data import load_builtin
    from peft_studio.core.methods import METHODS
    from peft_studio.core.model.experiment import Setup

    controller = Controller(Setup("llama-3-8b", "lora", {}, 0), load_builtin("intents"))  # bitfit: no biases
    panel = ComparePanel(controller, RunStore(tmp_path))
    qtbot.addWidget(panel)
    chosen = []
    panel.method_chosen.connect(chosen.append)
    panel.run_family()
    qtbot.waitUntil(lambda: not panel.running, timeout=60_000)
    assert panel.tabs.currentWidget() is panel.placement and panel.board.runs() == []
    assert [r.method for r in panel.placement.rows] == list(METHODS)
    assert "methods placed on llama-3-8b" in panel.status.text()
    ia3 = [r.method for r in panel.placement.rows].index("ia3")
    row = panel.placement.rows[ia3]
    assert panel.placement.item(ia3, 2).text() == f"{row.trainable:,}"
    panel.placement.itemDoubleClicked.emit(panel.placement.item(ia3, 0))
    assert chosen == ["ia3"]
    skipped = [i for i, r in enumerate(panel.placement.rows) if r.skipped]
    assert skipped  # BitFit on Llama (no biases): its row says why and cannot be chosen
    first = panel.placement.item(skipped[0], 0)
    assert "not on this base" in first.text() and panel.placement.rows[skipped[0]].skipped in html.unescape(
        first.toolTip())  # shown as plain text (gui/plain.py)
    panel.placement.itemDoubleClicked.emit(first)
    assert chosen == ["ia3"]
