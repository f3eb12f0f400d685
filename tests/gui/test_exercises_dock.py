"""The exercises wired to the window: set-up opens the right start, the evidence comes from the studio,
the trained sweep and the comparison run in threads that close_docks stops."""

from __future__ import annotations

from docks_helpers import docks_fixture  # noqa: F401 - the `docks` fixture

from peft_studio.core.methods import METHODS
from peft_studio.core.teaching.exercises import BOTTLENECKS, exercise, seed_formula_count, task_bytes
from peft_studio.gui.docks.dock_set import close_docks


def test_exercise_one_steps_through_the_methods_with_their_where(docks, window):
    wiring = docks.exercises_wiring
    methods = exercise(1).methods
    for i, name in enumerate([*methods, methods[0]]):
        wiring.panel.set_up_buttons[1].click()
        assert window.controller.setup.method == name
        assert METHODS[name].card.where in wiring.panel.evidence_labels[1].text()
        assert f"{i % len(methods) + 1}/{len(methods)}" in wiring.panel.evidence_labels[1].text()


def test_exercise_two_shows_twenty_tasks_and_opens_the_adapters_dock_on_its_base(docks, window):
    docks.lab.new_set()  # an empty set on the window's first base (tiny)
    assert docks.lab.adapters.base_name == "tiny"
    docks.exercises_wiring.panel.set_up_buttons[2].click()
    assert window.controller.setup.method == "adapter" and window.controller.setup.base == "seed-pooled"
    expected = task_bytes(window.controller.experiment).summary()
    assert docks.exercises_wiring.panel.evidence_labels[2].text() == expected and docks.adapters.isVisible()
    assert docks.lab.adapters.base_name == "seed-pooled"  # an empty set moved to the exercise's base


def test_exercise_two_keeps_a_set_with_adapters_on_another_base_and_says_so(docks, window):
    assert docks.lab.add("lora", "intents") is not None  # one adapter on tiny
    docks.exercises_wiring.panel.set_up_buttons[2].click()
    assert docks.lab.adapters.base_name == "tiny" and len(docks.lab.adapters) == 1  # nothing dropped behind the back
    assert "This set is on tiny" in docks.lab.set_label.text() and "seed-pooled" in docks.lab.set_label.text()


def test_exercise_three_counts_then_trains_the_sweep_in_a_visible_job(docks, window, qtbot):
    wiring = docks.exercises_wiring
    wiring.panel.set_up_buttons[3].click()
    assert [p.trainable for p in wiring.panel.points] == [seed_formula_count(m) for m in BOTTLENECKS]
    assert not wiring.sweep.running  # Set up counts; training is the user's to start
    wiring.sweep_steps = 2
    wiring.panel.train_button.click()
    assert wiring.sweep.running and not wiring.panel.train_button.isEnabled()
    assert [job.owner for job in window.controller.jobs.running()] == ["exercises"]
    assert window.job_strip.isVisible() and "sweep" in window.job_strip.rows[id(wiring.sweep.job)].label.text()
    qtbot.waitUntil(lambda: not wiring.sweep.running, timeout=30_000)
    points = wiring.panel.points
    assert [p.bottleneck for p in points] == list(BOTTLENECKS) and all(p.accuracy is not None for p in points)
    assert [p.trainable for p in points] == [p.formula for p in points]
    assert "Trained 6 bottlenecks" in wiring.panel.evidence_labels[3].text()


def test_exercise_four_asks_the_board_when_given(docks, window):
    asked: list[bool] = []
    docks.exercises_wiring.compare = lambda: asked.append(True)
    docks.exercises_wiring.set_up(4)
    assert asked == [True] and window.controller.dataset.name == "word-order"
    assert not docks.exercises_wiring.comparison.running


def test_exercise_four_without_a_board_compares_in_a_thread_the_user_starts_and_close_stops(docks, window, qtbot):
    wiring = docks.exercises_wiring
    wiring.compare = None  # no board: the exercise compares on its own
    wiring.comparison_steps = 1
    wiring.set_up(4)
    assert not wiring.comparison.running and wiring.panel.comparison_button.isVisibleTo(wiring.panel)
    wiring.panel.comparison_button.click()
    assert wiring.comparison.running
    qtbot.waitUntil(lambda: len(wiring.rows) >= 1, timeout=30_000)
    assert close_docks(docks) and not wiring.comparison.running
    text = wiring.panel.evidence_labels[4].text()
    assert text.splitlines()[1].startswith(exercise(4).methods[0]) and "training bytes" in text
