"""Lessons: the view and setup round-trip, Reset then Play repeats the curve bit for bit, bad files are named."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from peft_studio.core.errors import ConfigError, DatasetError
from peft_studio.core.methods import METHODS
from peft_studio.core.methods.method import REPARAMETERISED
from peft_studio.core.runs.train import train
from peft_studio.core.teaching.lesson import (
    PANELS,
    Lesson,
    LessonView,
    lesson_names,
    load_lesson,
    load_shipped_lesson,
    save_lesson,
)

VIEW = LessonView(zoom=1.7, scroll=(120.5, -40.0), collapsed_layers=True, presentation_scale=1.5,
                  hidden_panels=("tensors", "gradients"), hidden_controls=("base", "method"), selected_tab="try-it")


@pytest.fixture
def lesson():
    shipped = load_shipped_lesson("lora")
    return replace(shipped, view=VIEW, notes=("first note", "second"),
                   settings=replace(shipped.settings, steps=12, batch_size=16, eval_every=4), path=None)


def test_a_saved_lesson_opens_at_the_same_starting_point(tmp_path, lesson):
    again = load_lesson(save_lesson(tmp_path / "lesson.json", lesson))
    assert again.view == VIEW and again.notes == lesson.notes and again.title == lesson.title
    assert again.setup == lesson.setup and again.settings == lesson.settings
    assert again.dataset.train_texts == lesson.dataset.train_texts and again.seed == lesson.setup.seed


def test_reset_then_play_reproduces_the_curve_bit_for_bit(tmp_path, lesson):
    loaded = load_lesson(save_lesson(tmp_path / "lesson.json", lesson))
    experiment = loaded.experiment()
    first = [(e.loss, e.val_loss) for e in train(experiment, loaded.settings)]
    experiment.reset()  # the window's Reset
    second = [(e.loss, e.val_loss) for e in train(experiment, loaded.settings)]
    third = [(e.loss, e.val_loss) for e in train(load_lesson(tmp_path / "lesson.json").experiment(), loaded.settings)]
    assert first == second == third  # exact float equality, not approximate
    assert first[0] != first[-1]


def test_every_shipped_lesson_opens_and_covers_each_method_family():
    names = lesson_names()
    assert "word-order" in names
    lessons = [load_shipped_lesson(name) for name in names]
    families = {lesson.setup.method for lesson in lessons}
    assert {"prompt-tuning", "prefix-tuning", "adapter", "ia3", "lora"} <= families <= set(METHODS)
    word_order = load_shipped_lesson("word-order")
    assert word_order.dataset.name == "word-order" and word_order.notes
    with pytest.raises(ConfigError, match="no shipped lesson 'nope'"):
        load_shipped_lesson("nope")


def test_every_group_of_the_family_map_has_a_lesson_and_each_lesson_learns():
    """A lesson per group of the seed's map (Method.group), including the groups the later methods added (structured
    and orthogonal weight updates, selective tuning); each lesson's own settings lower its training loss."""
    lessons = [load_shipped_lesson(name) for name in lesson_names()]
    assert {METHODS[lesson.setup.method].group() for lesson in lessons} == {m.group() for m in METHODS.values()}
    taught = {lesson.setup.method for lesson in lessons}
    assert len({m for m in taught if METHODS[m].group() == REPARAMETERISED}) >= 3  # low-rank, structured, orthogonal
    for lesson in lessons:
        events = list(train(lesson.experiment(), replace(lesson.settings, steps=25, eval_every=25)))
        assert events[-1].loss < events[0].loss, lesson.title


BREAKAGES = [
    (lambda d: d.update(format="other"), "not a PEFT Studio lesson"),
    (lambda d: d.update(version=9), "lesson version 9"),
    (lambda d: d.update(title="  "), '"title" is empty'),
    (lambda d: d.pop("setup"), 'missing "setup"'),
    (lambda d: d.update(extra=1), 'unknown field "extra"'),
    (lambda d: d["view"].update(zoom=0), '"view.zoom" is 0'),
    (lambda d: d["view"].update(zoom="big"), '"view.zoom" should be a number'),
    (lambda d: d["view"].update(scroll=[1]), '"view.scroll" should be'),
    (lambda d: d["view"].update(collapsed_layers="yes"), '"view.collapsed_layers"'),
    (lambda d: d["view"].update(presentation_scale=9), '"view.presentation_scale" is 9'),
    (lambda d: d["view"].update(hidden_panels=["sidebar"]), "'sidebar', which is not one"),
    (lambda d: d["view"].update(hidden_controls=["play", "play"]), "repeats a name"),
    (lambda d: d["view"].update(selected_tab="plots"), "'plots' is not a tab"),
    (lambda d: d["view"].update(colour="red"), 'unknown field "view.colour"'),
    (lambda d: d.update(notes=[1, 2]), '"notes" should be a list of text'),
    (lambda d: d["setup"].update(method="magic"), "setup: unknown method 'magic'"),
    (lambda d: d["setup"]["options"].update(r=0), "lesson.json: setup: "),
    (lambda d: d["setup"]["training"].update(lr=-1), "setup: training: lr must be"),
]


@pytest.mark.parametrize("breakage, message", BREAKAGES)
def test_a_bad_lesson_is_one_clear_error_naming_the_file_and_field(tmp_path, lesson, breakage, message):
    path = save_lesson(tmp_path / "lesson.json", lesson)
    document = json.loads(path.read_text())
    breakage(document)
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError) as caught:
        load_lesson(path)
    assert str(caught.value).startswith("lesson.json: ") and message in str(caught.value)


def test_missing_files_and_datasets_are_named(tmp_path, lesson):
    with pytest.raises(ConfigError, match="no such lesson file"):
        load_lesson(tmp_path / "none.json")
    path = save_lesson(tmp_path / "lesson.json", lesson)
    document = json.loads(path.read_text())
    document["setup"]["dataset"] = {"builtin": "nope"}
    path.write_text(json.dumps(document))
    with pytest.raises(DatasetError, match="lesson.json: setup: its dataset"):
        load_lesson(path)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match="broken.json: not readable JSON"):
        load_lesson(tmp_path / "broken.json")


def test_saving_refuses_a_view_that_could_not_be_opened(tmp_path, lesson):
    with pytest.raises(ConfigError, match="view.hidden_panels"):
        save_lesson(tmp_path / "bad.json", replace(lesson, view=replace(VIEW, hidden_panels=("nope",))))
    assert not (tmp_path / "bad.json").exists()
    assert set(VIEW.hidden_panels) <= set(PANELS)


def test_lesson_is_a_dataclass_with_defaults(lesson):
    bare = Lesson(lesson.title, lesson.setup, lesson.dataset, lesson.settings)
    assert bare.view == LessonView() and bare.notes == ()


# ---- lessons on the command line --------------------------------------------------------------------------
def test_lessons_lists_shipped_and_user_lessons_and_says_what_cannot_be_read(tmp_path, lesson, capsys):
    from peft_studio.cli import main

    save_lesson(tmp_path / "mine.json", replace(lesson, title="My own lesson"))
    (tmp_path / "broken.json").write_text("{not json")
    assert main(["lessons", "--user-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    shipped, user = out.split("your lessons", 1)
    for name in lesson_names():
        assert f"  {name} " in shipped and load_shipped_lesson(name).title in shipped
    assert "mine" in user and "My own lesson" in user and "lora on tiny, dataset intents" in user
    assert "broken" in user and "cannot be read" in user
    assert main(["lessons", "--user-dir", str(tmp_path / "none")]) == 0
    assert "none yet: File > Save lesson" in capsys.readouterr().out


def test_train_setup_takes_a_lesson_file_or_name_as_its_setup(tmp_path, lesson, capsys, monkeypatch):
    """The same run from the lesson's file, its name in the user folder, and the equivalent setup file."""
    from peft_studio.cli import main
    from peft_studio.core.files.setup_file import save_setup
    from peft_studio.core.teaching.lesson import load_setup_or_lesson

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    from peft_studio.core.teaching.lesson import user_lessons_dir

    user_lessons_dir().mkdir(parents=True)
    path = save_lesson(user_lessons_dir() / "class-1.json", lesson)
    save_setup(tmp_path / "setup.json", lesson.setup, lesson.dataset, lesson.settings)
    runs = []
    for source in (str(path), "class-1", str(tmp_path / "setup.json")):
        assert main(["train", "--setup", source, "--steps", "3", "--log-every", "1"]) == 0, capsys.readouterr().err
        runs.append([line for line in capsys.readouterr().out.splitlines() if line.startswith("step=")])
    assert len(runs[0]) == 3 and runs[0] == runs[1] == runs[2]
    assert load_setup_or_lesson("lora")[0] == load_shipped_lesson("lora").setup  # a shipped name
    assert main(["train", "--setup", "no-such-lesson"]) == 2
    assert "no lesson has that name (`peft-studio lessons` lists them)" in capsys.readouterr().err
    (tmp_path / "other.json").write_text(json.dumps({"format": "something"}))
    assert main(["train", "--setup", str(tmp_path / "other.json")]) == 2
    assert "not a PEFT Studio setup or lesson" in capsys.readouterr().err
