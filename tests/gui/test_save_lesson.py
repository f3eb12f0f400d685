"""File > Save lesson…: the window as it is (setup, seed, view, title, notes) becomes a lesson file that opens back
to the same state, and that the command line lists and trains."""

from __future__ import annotations

from dataclasses import replace

from docks_helpers import docks_fixture  # noqa: F401 - the `docks` fixture

from peft_studio.cli import main
from peft_studio.core.teaching.lesson import LessonView, load_lesson, load_shipped_lesson, user_lessons_dir
from peft_studio.gui.window.lessons import (
    SaveLessonDialog,
    apply_lesson,
    current_view,
    open_lesson_file,
    save_lesson_to,
)

TEACHER_VIEW = LessonView(zoom=2.0, scroll=None, collapsed_layers=True, presentation_scale=2.0,
                          hidden_panels=("plots", "tensors", "try-it", "adapters", "card"),
                          hidden_controls=("play", "base", "undo", "examples", "method-options", "insertion-points"),
                          selected_tab="training")


def test_a_saved_lesson_reopens_to_the_same_setup_and_view(docks, window, tmp_path):
    lesson = load_shipped_lesson("lora")
    assert apply_lesson(window, replace(lesson, view=TEACHER_VIEW))
    window.controller.set_seed(11)  # a setting changed after opening: the saved lesson has it
    before = current_view(window)
    assert set(before.hidden_panels) == set(TEACHER_VIEW.hidden_panels)
    assert set(before.hidden_controls) == set(TEACHER_VIEW.hidden_controls)
    assert before.collapsed_layers is True and before.presentation_scale > 1 and before.selected_tab == "training"
    assert before.zoom > 1.4 and before.scroll is not None  # zoomed in from the fitted size

    path = save_lesson_to(window, tmp_path / "mine.json", "  My LoRA lesson ", ["first note", " ", "second"])
    saved = load_lesson(path)
    c = window.controller
    assert (saved.title, saved.notes) == ("My LoRA lesson", ("first note", "second"))
    assert (saved.setup.base, saved.setup.method, saved.setup.options, saved.setup.seed) == \
        (c.setup.base, c.setup.method, c.setup.options, 11)
    assert saved.dataset.name == c.dataset.name and saved.settings == c.settings
    assert saved.view == before

    assert open_shipped_lesson_resets(window)
    assert open_lesson_file(window, path)  # back to the saved state, through the file
    again = current_view(window)
    assert set(again.hidden_panels) == set(before.hidden_panels)
    assert set(again.hidden_controls) == set(before.hidden_controls)
    assert abs(again.zoom / before.zoom - 1) < 0.02
    assert all(abs(a - b) < 20 for a, b in zip(again.scroll, before.scroll, strict=True))  # within a few pixels
    assert c.setup.seed == 11 and docks.notes_strip.notes == ("first note", "second")


def open_shipped_lesson_resets(window) -> bool:
    """Another lesson in between, whose plain view shows everything again."""
    from peft_studio.gui.window.lessons import open_shipped_lesson

    ok = open_shipped_lesson(window, "adapter")
    return ok and current_view(window).hidden_panels == () and window.view.auto_fit


def test_a_fitted_view_saves_as_zoom_1_without_scroll(docks, window, tmp_path):
    assert window.view.auto_fit
    view = current_view(window)
    assert (view.zoom, view.scroll, view.hidden_panels, view.hidden_controls) == (1.0, None, (), ())
    assert view.presentation_scale == 1.0


def test_save_lesson_sits_in_the_file_menu_after_save_setup(docks, window):
    file_menu = next(a.menu() for a in window.menuBar().actions() if a.menu() and "File" in a.menu().title())
    entries = file_menu.actions()
    assert docks.save_lesson in entries
    assert entries.index(docks.save_lesson) == entries.index(window.actions_.save_setup) + 1


def test_the_dialog_starts_from_the_open_lesson(docks, window):
    assert open_lesson_file(window, load_shipped_lesson("ia3").path)
    dialog = SaveLessonDialog(window)
    assert dialog.title.text() == load_shipped_lesson("ia3").title
    assert dialog.note_list() == list(load_shipped_lesson("ia3").notes)
    dialog.notes.setPlainText("one\nline wrapped\n\n\ntwo")
    assert dialog.note_list() == ["one line wrapped", "two"]
    dialog.deleteLater()


def test_an_empty_title_is_a_dialog_and_nothing_is_written(docks, window, errors, tmp_path):
    assert save_lesson_to(window, tmp_path / "x.json", "  ", []) is None
    assert errors and errors[-1][0] == "Cannot save this lesson" and "title" in errors[-1][1]
    assert not (tmp_path / "x.json").exists()


def test_a_lesson_saved_in_the_user_folder_is_listed_and_trains_from_the_command_line(docks, window, capsys):
    """The dialog offers user_lessons_dir(): `peft-studio lessons` lists what is saved there, by name."""
    window.controller.set_training(steps=2)
    path = save_lesson_to(window, user_lessons_dir() / "class-3.json", "Class 3", ["look at q and v"])
    assert path is not None and path.parent == user_lessons_dir()
    capsys.readouterr()
    assert main(["lessons"]) == 0
    listing = capsys.readouterr().out
    assert "class-3" in listing.split("your lessons", 1)[1] and "Class 3" in listing
    assert main(["train", "--setup", "class-3"]) == 0
    assert "step=001" in capsys.readouterr().out
    path.unlink()
