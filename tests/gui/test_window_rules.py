"""Issue 21's rules for the window: background work never rewrites the user's setup or history, a job is visible
and stops, nothing waits on the GUI thread, large bases open collapsed and draw a few layers at a time, the
zoom works at every size, status messages are cut at a word and logged, and the helpers reach the window
through narrow interfaces."""

from __future__ import annotations

import ast
import copy
import threading
from pathlib import Path

from docks_helpers import docks_fixture  # noqa: F401 - the `docks` fixture
from PySide6.QtCore import QTimer

import peft_studio
from peft_studio.core.jobs import STOPPING
from peft_studio.core.studio import StudioState

GUI = Path(peft_studio.__file__).parent / "gui"


# ---- background work and the user's setup ------------------------------------------------------------
def test_a_family_run_previews_its_methods_and_leaves_setup_and_undo_as_they_were(docks, window, qtbot):
    c = window.controller
    before_edit = copy.deepcopy(c.setup)
    assert c.set_method("lora", {"r": 4})  # the user's own last step
    mine = copy.deepcopy(c.setup)
    board = docks.board
    board.board.steps_box.setValue(3)
    previewed: list[str] = []
    board.method_started.connect(lambda m: previewed.append(window.scene.info.method))
    history: list[tuple[bool, bool]] = []
    c.history_changed.connect(lambda u, r: history.append((u, r)))
    board.run_family(["ia3", "adapter"])
    job = window.controller.jobs.running("compare")[0]
    assert window.job_strip.isVisible() and job.total == 6
    qtbot.waitUntil(lambda: window.preview.active, timeout=60_000)
    assert "Preview" in window.preview_strip.label.text() and "unchanged" in window.preview_strip.label.text()
    qtbot.waitUntil(lambda: not board.running, timeout=120_000)
    assert previewed and set(previewed) <= {"ia3", "adapter"}  # the diagram followed the run…
    assert c.setup == mine and history == []  # …and the setup and its history never moved
    assert not window.preview.active and window.scene.info.method == "lora"  # back where the user left it
    assert not window.job_strip.isVisible() and [r.method for r in board.board.runs()] == ["ia3", "adapter"]
    assert c.undo() and c.setup == before_edit  # the last undo step is still the user's own


def test_back_to_my_setup_ends_the_preview_for_the_rest_of_the_run(docks, window, qtbot):
    board = docks.board
    board.board.steps_box.setValue(3)
    board.run_family(["ia3", "adapter", "lora"])
    qtbot.waitUntil(lambda: window.preview.active, timeout=60_000)
    window.preview_strip.action.click()
    assert not window.preview.active and window.scene.info.method == window.controller.setup.method
    seen = []
    board.method_started.connect(lambda _m: seen.append(window.preview.active))
    qtbot.waitUntil(lambda: not board.running, timeout=120_000)
    assert seen and not any(seen)


def test_a_stopped_family_run_ends_and_lists_nothing(docks, window, qtbot):
    board = docks.board
    board.board.steps_box.setValue(100_000)
    board.run_family(["lora", "adapter"])
    qtbot.waitUntil(lambda: board.status.text().startswith("Training"), timeout=60_000)
    job = window.controller.jobs.running("compare")[0]
    row = window.job_strip.rows[id(job)]
    row.stop_button.click()  # the Stop in the main window
    assert job.state == STOPPING and not row.stop_button.isEnabled()
    qtbot.waitUntil(lambda: not board.running, timeout=30_000)
    assert window.controller.jobs.jobs == [] and not window.job_strip.isVisible()
    assert board.board.runs() == [] and board.status.text().startswith("Stopped")


def test_closing_a_dock_asks_about_its_running_job(docks, window, qtbot, monkeypatch):
    from peft_studio.gui.docks import dock_set

    answers = iter(["cancel", "keep", "stop"])
    asked = []
    monkeypatch.setattr(dock_set, "ask_stop_or_keep", lambda parent, panel, jobs: asked.append(panel) or next(answers))
    docks.show_dock("exercises")
    wiring = docks.exercises_wiring
    wiring.sweep_steps = 100_000
    wiring.train_sweep()
    docks.exercises.close()
    assert asked == ["Exercises"] and docks.exercises.isVisible() and wiring.sweep.running  # cancelled
    docks.exercises.close()
    assert not docks.exercises.isVisible() and wiring.sweep.running  # kept: still listed above the diagram
    assert window.job_strip.isVisible()
    docks.exercises.show()
    docks.exercises.close()
    assert wiring.sweep.job is None or wiring.sweep.job.state == STOPPING
    qtbot.waitUntil(lambda: not wiring.sweep.running, timeout=30_000)
    docks.exercises.show()
    docks.exercises.close()  # nothing runs: no question
    assert asked == ["Exercises"] * 3


def test_closing_the_window_never_waits_for_a_job(docks, window, qtbot):
    wiring = docks.exercises_wiring
    wiring.sweep_steps = 100_000
    wiring.train_sweep()
    window.close()  # returns at once: the window hides and closes when the job has ended
    assert window.isHidden() and window.closing
    qtbot.waitUntil(window.idle, timeout=30_000)


# ---- slow builds off the GUI thread ---------------------------------------------------------------------
def test_a_slow_build_runs_off_the_gui_thread_and_edits_made_meanwhile_apply_after(window, qtbot, monkeypatch):
    release = threading.Event()
    original = StudioState.prepare

    def slow_prepare(self, edit):
        release.wait(30)  # a checkpoint that takes its time
        return original(self, edit)

    monkeypatch.setattr(StudioState, "prepare", slow_prepare)
    c = window.controller
    assert c.set_base("llama-3-70b")  # returns at once
    assert c.building and c.setup.base == "tiny" and not window.act_play.isEnabled()
    assert [j.title for j in c.jobs.running("window")] == ["Building llama-3-70b · lora"]
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    qtbot.waitUntil(lambda: len(ticks) >= 5, timeout=5_000)  # the event loop runs while it builds
    timer.stop()
    assert c.set_option("r", 4)  # waits for the build, then applies to the new base
    assert c.setup.base == "tiny"
    release.set()
    assert c.wait_for_builds()
    assert c.setup.base == "llama-3-70b" and c.setup.options.get("r") == 4 and c.census.total > 7e10


def test_a_stopped_build_keeps_the_previous_setup(window, qtbot, monkeypatch):
    release = threading.Event()
    original = StudioState.prepare
    monkeypatch.setattr(StudioState, "prepare", lambda self, edit: release.wait(30) and original(self, edit))
    c = window.controller
    assert c.set_base("llama-3-70b")
    c.jobs.running("window")[0].request_stop()
    assert not c.building and c.setup.base == "tiny" and window.act_play.isEnabled()
    release.set()
    assert c.wait_for_builds() and c.setup.base == "tiny"  # the abandoned result is dropped


# ---- large bases -----------------------------------------------------------------------------------------
def test_a_large_base_opens_collapsed_and_draws_a_few_layers_at_a_time(window, qtbot, errors):
    c = window.controller
    assert c.set_base("llama-3-70b") and c.wait_for_builds(), errors
    scene = window.scene
    assert scene.layers_collapsed() and len(scene.site_items) < 20
    window.toggle_layers()  # L: draw layers; a large base draws four of them
    assert scene.shown_layers() == (0, 3)
    drawn = {s.layer for s in c.experiment.base.sites() if s.id in scene.site_items and s.layer is not None}
    assert drawn == {0, 1, 2, 3} and "layers:4-79" in scene.block_items
    assert window.show_layers("40-41") and scene.shown_layers() == (40, 41)
    assert {"layers:0-39", "layers:42-79"} <= set(scene.block_items)
    scene.block_items["layers:42-79"].on_click("layers:42-79")  # the run below: its next layers
    assert scene.shown_layers() == (42, 45)
    assert not window.show_layers("80") and errors[-1][0] == "Show layers"
    site = next(s for s in c.experiment.base.sites() if s.layer == 43 and s.name == "k_proj")
    effect = c.click_effect(site)
    window.on_site_clicked(site.id)  # a click on a 70B base: the expected count at once, the build after
    assert c.building and f"{c.census.trainable + effect.delta:,}" in window.params_label.text()
    assert c.wait_for_builds() and site.id in c.selected_site_ids()
    assert window.params_label.text().startswith(f"trainable {c.census.trainable:,}")


def test_zoom_works_about_the_view_at_every_size(window, qtbot):
    c = window.controller
    assert c.set_base("llama-3-70b") and c.wait_for_builds()
    c.view.set(collapsed=False, shown_layers=(0, 40))  # a tall stack: fitted, it is a strip
    window.view.fit()
    fitted = window.view.zoom_level()
    assert fitted < 0.05  # smaller than the old fixed limit, which refused every zoom
    assert window.view.zoom(window.view.ZOOM_STEP) and window.view.zoom_level() > fitted
    window.actions_.zoom_in.trigger()
    assert window.view.zoom_level() > fitted * window.view.ZOOM_STEP * 1.1
    assert c.view.zoom > 1.0 and c.view.scroll is not None  # the view state keeps it (a lesson can save it)


# ---- status messages ------------------------------------------------------------------------------------
def test_a_long_status_message_is_cut_at_a_word_and_kept_whole(window, qtbot):
    window.resize(1280, 720)
    qtbot.wait(50)
    bar = window.statusBar()
    assert bar.message_area().width() > 300  # room for a message beside the counts, on a projector
    message = " ".join(f"word{i}" for i in range(80))
    bar.showMessage(message)
    shown = bar.shown_text()
    assert shown.endswith(" …") and message.startswith(shown[:-2]) and shown[:-2].split()[-1] in message.split()
    assert bar.toolTip() == message and bar.log.entries[-1][1] == message
    window.actions_.messages.trigger()
    assert message in bar._dialog.view.toPlainText()


# ---- narrow interfaces ----------------------------------------------------------------------------------
def test_the_controller_is_the_whole_facade():
    bypass = [f"{p.relative_to(GUI)}:{n}" for p in GUI.rglob("*.py") if p.name != "controller.py"
              for n, line in enumerate(p.read_text().splitlines(), 1) if ".studio." in line or "._studio" in line]
    assert bypass == []


def test_lessons_reach_the_window_only_through_its_protocol():
    from peft_studio.gui.window.lessons import LessonHost

    allowed = {name for name in dir(LessonHost) if not name.startswith("_")}
    tree = ast.parse((GUI / "window" / "lessons.py").read_text())
    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "host"}
    assert used and used <= allowed, used - allowed
    assert not any(isinstance(node, ast.Name) and node.id == "window" for node in ast.walk(tree))


# ---- things that showed the wrong thing ---------------------------------------------------------------
def test_notes_and_the_tensor_filter_belong_to_their_lesson(window, qtbot):
    from peft_studio.gui.window.lessons import open_shipped_lesson

    assert open_shipped_lesson(window, "word-order")
    assert window.notes_strip.isVisible() and window.notes_strip.notes
    assert not window.hint.isVisible()  # past the first start: the hint strip goes
    window.table.filter.setText("lora")
    assert open_shipped_lesson(window, "lora")
    assert window.table.filter.text() == ""  # a lesson opens on the whole tensor table
    assert window.controller.load_example("seed-example")  # a whole new setup that is not a lesson
    assert window.notes_strip.isHidden() and window.controller.view.notes == ()


def test_the_previous_run_is_kept_only_for_the_same_task(window, qtbot):
    c = window.controller
    c.set_training(steps=3)
    window.play_pause()
    qtbot.waitUntil(lambda: not window.runner.active, timeout=30_000)
    assert c.set_option("r", 4)  # same task: the run just made is the faded comparison
    assert window.plots.previous["loss"].n == 3 and window.plots.old_curves["loss"].isVisible()
    from peft_studio.core.data import load_builtin

    assert c.set_dataset(load_builtin("word-order"))  # another task: its losses are not this task's scale
    assert window.plots.previous["loss"].n == 0 and not window.plots.old_curves["loss"].isVisible()


def test_lists_grey_out_what_the_dataset_cannot_take(window):
    from peft_studio.core.data import load_builtin

    c = window.controller
    assert c.set_base("tiny-decoder") and c.set_dataset(load_builtin("texts"))  # the next-token task
    methods = window.method_box.model()
    names = [window.method_box.itemText(i) for i in range(window.method_box.count())]
    for name in ("head-only", "bitfit"):  # nothing of their own would train on next-token: both grey
        item = methods.item(names.index(name))
        assert not item.isEnabled() and "Not on tiny-decoder with texts" in item.toolTip()
    bases = window.base_box.model()
    tiny = bases.item([window.base_box.itemText(i) for i in range(window.base_box.count())].index("tiny"))
    assert not tiny.isEnabled() and "decoder with an LM head" in tiny.toolTip()


def test_the_padlock_is_not_shown_beside_a_trained_base_and_stop_waits_for_a_run(window):
    c = window.controller
    assert not window.actions_.stop.isEnabled()  # nothing to stop
    assert not window.lock_icon.isHidden()
    assert c.set_method("full")
    assert window.base_label.text().startswith("base trained") and window.lock_icon.isHidden()
    assert c.set_method("lora") and not window.lock_icon.isHidden()


def test_a_placement_row_shows_its_method_as_placed_and_layers_read_as_ranges(window, errors):
    c = window.controller
    assert c.set_base("llama-3-8b") and c.wait_for_builds() and c.setup.method == "lora"
    assert c.set_base("llama-3-70b") and c.wait_for_builds(), errors
    assert c.setup.options.get("layers") == "0-31"  # the 8B's layers carried over, as a range
    carried = c.census.trainable
    window.choose_placed_method("lora")  # a Placement row: LoRA as the row counted it, every layer
    assert c.wait_for_builds() and c.setup.options.get("layers") is None
    from peft_studio.core.memory.at_scale import MemoryPlan
    from peft_studio.core.runs.placement_compare import compare_placements

    row = next(compare_placements("llama-3-70b", c.dataset, ["lora"], MemoryPlan()))
    assert c.census.trainable == row.trainable > carried


def test_the_diagram_svg_leaves_the_table_selection_out(window, tmp_path):
    from peft_studio.gui.window import theme

    window.scene.mark({"head"})
    path = window.files.export_to(tmp_path / "diagram.svg")
    assert path is not None and theme.SELECTED.name() not in path.read_text().lower()
    assert window.scene.marked == {"head"} and window.scene.block_items["head"].marked  # back on screen


def test_export_dialogs_remember_their_folder(window, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    asked: list[str] = []
    target = tmp_path / "slides" / "plots.png"
    target.parent.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda parent, caption, directory, *a, **k: asked.append(directory) or (str(target), ""))
    window.files.export_dialog()
    window.files.export_dialog()
    assert asked[0] == "peft-studio.png" and asked[1] == str(target.parent / "peft-studio.png")


def test_a_negative_gain_is_drawn_flipped_not_damped():
    from peft_studio.gui.diagram.gains import gain_colour

    damped, flipped, neutral = gain_colour(0.6), gain_colour(-0.6), gain_colour(1.0)
    assert neutral == (255, 255, 255) and damped[2] == 255 and flipped != damped
    assert flipped[0] > flipped[1]  # purple (red and blue over green), not the damped blue


def test_the_window_never_waits_on_a_thread():
    """stop_and_wait, close_docks and wait_for_builds block: tests and scripts use them, the window never does
    (only the blocking helpers themselves call each other)."""
    blocking = {"stop_and_wait", "close_docks", "wait_for_builds"}
    calls = []
    for path in GUI.rglob("*.py"):
        if path.name == "screenshot.py":  # a script: it renders one picture and exits
            continue
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) or function.name in blocking:
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Call):
                    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                    if name in blocking:
                        calls.append(f"{path.relative_to(GUI)}:{node.lineno} {function.name} calls {name}")
    assert calls == []


def test_one_worker_class_runs_every_thread_the_window_starts():
    from peft_studio.gui.jobs.worker import TrainWorker, Worker

    assert issubclass(TrainWorker, Worker)
    threads = []
    for path in GUI.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", getattr(b, "attr", "")) in ("QThread", "Thread")
                                                     for b in node.bases):
                threads.append(f"{path.relative_to(GUI)}:{node.name}")
    assert threads == ["jobs/worker.py:Worker"]
