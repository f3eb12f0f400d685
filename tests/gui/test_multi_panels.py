"""The adapter switcher and the exercises panel, standalone (the window wires them)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from peft_studio.core.adapters.adapter_set import AdapterSet
from peft_studio.core.data import load_builtin
from peft_studio.core.model.experiment import Experiment
from peft_studio.core.teaching.examples import load_example
from peft_studio.core.teaching.exercises import BOTTLENECKS, EXERCISES, SweepPoint, seed_formula_count, task_bytes
from peft_studio.gui.panels.adapters import AdapterSwitcher
from peft_studio.gui.panels.exercises import ExercisesPanel


@pytest.fixture
def adapters():
    intents = load_builtin("seed-intents")
    adapters = AdapterSet.build("seed-pooled", [intents], seed=42)
    adapters.add("refunds", "lora", {}, intents)
    adapters.add("bottleneck", "adapter", {"bottleneck": 4}, intents)
    return adapters


def test_switcher_lists_glyph_task_and_bytes_and_marks_the_active(qtbot, adapters):
    switcher = AdapterSwitcher()
    qtbot.addWidget(switcher)
    switcher.show_set(adapters)
    assert switcher.names() == ["refunds", "bottleneck"] and switcher.active == "bottleneck"
    rows = [switcher.tree.topLevelItem(i) for i in range(2)]
    assert [r.text(0) for r in rows] == ["BA", "A"] and rows[0].text(2) == "seed-intents"
    assert rows[1].text(1) == "● bottleneck" and rows[1].font(1).bold() and not rows[0].font(1).bold()
    assert rows[1].text(3) == f"{adapters.info('bottleneck').bytes:,} B" == "728 B"  # 182 fp32 numbers
    assert "base seed-pooled" in switcher.base_label.text()


def test_a_choice_emits_the_name_and_a_refresh_emits_nothing(qtbot, adapters):
    switcher = AdapterSwitcher()
    qtbot.addWidget(switcher)
    chosen: list[str] = []
    switcher.adapter_chosen.connect(chosen.append)
    switcher.show_set(adapters)
    switcher.show_set(adapters)
    assert chosen == []
    rect = switcher.tree.visualItemRect(switcher.tree.topLevelItem(0))
    qtbot.mouseClick(switcher.tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert chosen == ["refunds"]
    adapters.activate(chosen[-1])  # what the owner does with the signal
    switcher.show_set(adapters)
    assert switcher.active == "refunds"
    switcher.choose("refunds")  # already active: nothing to do
    assert chosen == ["refunds"]
    switcher.show_switch_time(0.21)
    assert "0.21 ms" in switcher.switch_label.text()


def test_exercises_panel_set_up_buttons_emit_their_number(qtbot):
    panel = ExercisesPanel()
    qtbot.addWidget(panel)
    assert sorted(panel.set_up_buttons) == [e.number for e in EXERCISES]
    for number, button in panel.set_up_buttons.items():
        with qtbot.waitSignal(panel.set_up_requested) as blocker:
            qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        assert blocker.args == [number]
    with qtbot.waitSignal(panel.sweep_training_requested):
        qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)


def test_the_sweep_plot_shows_the_counts_the_formula_predicts(qtbot):
    panel = ExercisesPanel()
    qtbot.addWidget(panel)
    qtbot.mouseClick(panel.count_button, Qt.MouseButton.LeftButton)
    xs, ys = panel.params_curve.getOriginalDataset()
    assert list(xs) == list(BOTTLENECKS)
    assert list(ys) == [seed_formula_count(m) for m in BOTTLENECKS] == list(panel.formula_curve.getOriginalDataset()[1])
    assert "m = 4: 182 trainable, counted" in panel.sweep_table.text()
    panel.add_sweep_point(SweepPoint(4, 182, 182, "…", 1.0))
    assert list(panel.accuracy_curve.getOriginalDataset()[1]) == [1.0] and len(panel.points) == len(BOTTLENECKS)
    setup, dataset, _ = load_example("seed-example")
    panel.show_task_bytes(task_bytes(Experiment(setup, dataset)))
    assert panel.evidence_labels[2].text().startswith("20 adapters on one base")
