"""install_docks: hidden docks tabbed in one side area with View toggles whose shortcuts clash with nothing; the
lessons in Examples; apply_lesson restores the setup and the view; Reset then Play repeats the curve."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from dataclasses import replace

from docks_helpers import docks_fixture  # noqa: F401 - the `docks` fixture
from PySide6.QtGui import QAction

from peft_studio.core.teaching.lesson import LessonView, lesson_names, load_shipped_lesson
from peft_studio.gui.window.lessons import apply_lesson, open_lesson_file, open_shipped_lesson
from peft_studio.gui.window.view_binding import control_actions
from peft_studio.gui.window.view_binding import tab_index as tab_of


def tab_index(window, name: str) -> int:
    return tab_of(window.tabs, name)


def test_docks_start_hidden_and_toggle_from_the_view_menu_as_tabs_of_one_side_area(docks, window):
    from PySide6.QtCore import Qt

    for name in ("compare", "adapters", "exercises", "memory"):
        dock = docks.dock(name)
        assert dock.isHidden() and docks.toggles[name] in window.actions()
        assert docks.built(name) is None and dock.widget() is None  # start-up pays for the frame only
        docks.toggles[name].trigger()
        assert dock.isVisible() and not dock.isFloating()
        assert docks.built(name) is not None and dock.widget() is not None  # built when first shown
        assert window.dockWidgetArea(dock) == Qt.DockWidgetArea.RightDockWidgetArea
        # one side area: every dock is a tab beside the setup panel, never a strip that squeezes the diagram
        assert docks.setup in window.tabifiedDockWidgets(dock)
    # the family map floats on its own; it too is built (and starts measuring) only when first shown
    assert docks.family_map.isHidden() and docks.built("family-map") is None
    assert window.controller.jobs.running("family-map") == []
    assert window.view.width() >= window.view.minimumWidth() > 0
    assert len(docks.lesson_actions) == len(lesson_names()) >= 6
    assert docks.open_lesson in docks.examples_menu.actions()


def test_no_two_actions_share_a_shortcut(docks, window):
    owners: dict[str, str] = {}
    for action in window.findChildren(QAction):
        for sequence in action.shortcuts():
            key = sequence.toString()
            assert key not in owners, f"{key} is both {owners[key]!r} and {action.text()!r}"
            owners[key] = action.text()
    assert {"Ctrl+Alt+A", "Ctrl+Alt+X", "Ctrl+Alt+N"} <= set(owners)


def test_a_shipped_lesson_opens_its_setup_tab_and_notes(docks, window):
    action = next(a for a in docks.lesson_actions if "Limited transformation" in a.text())
    action.trigger()
    lesson = load_shipped_lesson("word-order")
    c = window.controller
    assert (c.setup.base, c.setup.method, c.dataset.name) == (lesson.setup.base, lesson.setup.method, "word-order")
    assert c.settings == lesson.settings and c.can_undo
    assert window.scene.collapsed is False and window.view.auto_fit
    assert window.tabs.currentIndex() == tab_index(window, lesson.view.selected_tab)
    assert window.notes_strip.isVisible() and docks.notes_strip.notes == lesson.notes
    assert lesson.notes[0][:30] in docks.notes_strip.text.text()
    c.undo()  # one undo step back to where the window was
    assert c.setup.method != "prompt-tuning" or c.dataset.name != "word-order"


def test_hidden_panels_and_controls_zoom_scroll_and_presentation_then_the_next_lesson_restores(docks, window):
    lesson = load_shipped_lesson("lora")
    view = LessonView(zoom=2.0, scroll=None, collapsed_layers=True, presentation_scale=2.0,
                      hidden_panels=("plots", "tensors", "try-it", "adapters", "card"),
                      hidden_controls=("play", "base", "undo", "examples", "method-options", "insertion-points"),
                      selected_tab="training")
    assert apply_lesson(window, replace(lesson, view=view))
    assert window.presentation.on and window.scene.collapsed is True and not window.view.auto_fit
    zoomed = window.view.zoom_level()
    window.view.fit()
    # zoomed in from the fitted size (the exact factor moves when the input row is rebuilt for the
    # "Try it" sentence after the lesson opens, which changes the diagram's height)
    assert zoomed > 1.4 * window.view.zoom_level()
    assert window.plots.isHidden() and window.table.isHidden() and window.card.isHidden()
    assert not window.tabs.isTabVisible(tab_index(window, "try-it"))
    assert window.tabs.currentIndex() == tab_index(window, "training")
    assert not docks.toggles["adapters"].isVisible() and docks.adapters.isHidden()
    for name in ("play", "base", "undo", "examples"):
        assert control_actions(window, name) and not any(a.isVisible() for a in control_actions(window, name))
    assert window.form.isHidden() and not window.view.isInteractive()
    assert docks.examples_menu.menuAction().isVisible() is False

    assert open_shipped_lesson(window, "lora")
    centre = window.scene.sceneRect().center()  # the scene the scrolled lesson will show
    scrolled = replace(lesson, view=LessonView(zoom=3.0, scroll=(centre.x() + 20, centre.y() + 10)))
    assert apply_lesson(window, scrolled)
    middle = window.view.mapToScene(window.view.viewport().rect().center())
    assert abs(middle.x() - centre.x() - 20) < 20 and abs(middle.y() - centre.y() - 10) < 20  # within a few pixels
    assert not window.presentation.on and window.scene.collapsed is None
    assert not window.plots.isHidden() and not window.table.isHidden() and window.view.isInteractive()
    assert window.tabs.isTabVisible(tab_index(window, "try-it")) and docks.toggles["adapters"].isVisible()
    assert all(a.isVisible() for name in ("play", "base", "undo", "examples") for a in control_actions(window, name))


def test_a_bad_lesson_file_is_a_dialog_and_nothing_changes(docks, window, errors, tmp_path):
    before = (window.controller.setup, window.controller.dataset.name)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({"format": "peft-studio-lesson", "version": 1, "title": "x", "setup": {},
                                "view": {"zoom": 99}}))
    assert not open_lesson_file(window, path)
    assert errors and errors[-1][0] == "Cannot open this lesson" and "broken.json" in errors[-1][1]
    assert (window.controller.setup, window.controller.dataset.name) == before
    assert window.notes_strip.isHidden()


@contextlib.contextmanager
def busy_core():
    """Another program spinning on one core for the whole block (a browser, a video call; a session of its own, as
    another program is), then killed: the trainer's thread count must not follow the load while a run goes on."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        yield spinner
    finally:
        spinner.kill()
        spinner.wait()


def _play_curve(qtbot, window, threads: set | None = None) -> list[tuple[float, float | None]]:
    curve: list[tuple[float, float | None]] = []

    def take(batch):
        curve.extend((e["loss"], e["val_loss"]) for e in batch)
        if threads is not None:
            threads.update(e["threads"] for e in batch)

    window.runner.events.connect(take)
    window.runner.play_pause()
    qtbot.waitUntil(lambda: not window.runner.active, timeout=20_000)
    window.runner.events.disconnect(take)
    return curve


def test_open_lesson_then_reset_then_play_twice_gives_the_same_curve_bit_for_bit(docks, window, qtbot):
    """Under load (a busy core started here): 1 and 2 torch threads give different last bits, so the count
    must be fixed for a run and kept for a run that starts from the same place."""
    with busy_core() as spinner:
        assert open_shipped_lesson(window, "lora")
        window.controller.set_training(steps=6, eval_every=2)  # the lesson's own settings, fewer steps
        window.reset()
        threads: set[int] = set()
        first = _play_curve(qtbot, window, threads)
        window.reset()
        second = _play_curve(qtbot, window, threads)
        assert len(first) == 6 and first == second
        assert open_shipped_lesson(window, "lora")  # reopening is the same starting point again
        window.controller.set_training(steps=6, eval_every=2)
        assert _play_curve(qtbot, window, threads) == first
        assert len(threads) == 1 and spinner.poll() is None  # one count throughout, under load throughout
