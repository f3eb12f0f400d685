"""Lessons: a setup plus the view a teacher prepared, so opening one restores the exact starting point.

A lesson file is JSON:

    {"format": "peft-studio-lesson", "version": 1, "title": "...",
     "setup": {... a setup file's object (setup_file.py) ...},
     "view": {"zoom": 1.0, "scroll": [x, y] or null, "collapsed_layers": true/false/null,
              "presentation_scale": 1.0, "hidden_panels": [...], "hidden_controls": [...],
              "selected_tab": "method"},
     "notes": ["shown in a side strip", ...]}

The seed is the setup's (model seed and mini-batch seed), so Reset then Play gives the same curve.
Every field is checked; a bad file is one ConfigError (or DatasetError) naming the file and the field.
Panel, control and tab names are the vocabulary below; the window maps each to its widget.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import TextDataset
from ..errors import ConfigError, OutputError, PeftStudioError
from ..files import safe_io
from ..files.jsonfile import read_json_object
from ..files.resources import resource_files, resource_path
from ..files.setup_file import FORMAT as SETUP_FORMAT
from ..files.setup_file import MAX_SETUP_BYTES, parse_setup, setup_document
from ..files.user_dirs import user_data_dir
from ..model.experiment import Experiment, Setup
from ..runs.train import TrainSettings
from .notes import MAX_NOTE_CHARS, MAX_NOTES_CHARS, MAX_TITLE_CHARS

FORMAT = "peft-studio-lesson"
VERSION = 1
PANELS = ("diagram", "plots", "gradients", "method", "card", "training", "try-it", "tensors", "notes", "adapters",
          "exercises")
CONTROLS = ("play", "step", "stop", "reset", "base", "dataset", "method", "insertion-points", "method-options",
            "training-options", "open-data", "open-setup", "save-adapter", "undo", "examples")
TABS = ("method", "training", "try-it")
ZOOM_RANGE = (0.05, 20.0)
SCALE_RANGE = (0.5, 4.0)
MAX_NOTES = 50


@dataclass(frozen=True)
class LessonView:
    """What the window shows when the lesson opens."""

    zoom: float = 1.0  # diagram scale, 1 = fitted size
    scroll: tuple[float, float] | None = None  # scene point at the view's centre; None: fit the diagram
    collapsed_layers: bool | None = None  # None: the diagram decides (deep stacks collapse)
    presentation_scale: float = 1.0  # 1: normal sizes; above 1: presentation (large fonts, thick lines)
    hidden_panels: tuple[str, ...] = ()
    hidden_controls: tuple[str, ...] = ()
    selected_tab: str = "method"


@dataclass(frozen=True)
class Lesson:
    title: str
    setup: Setup
    dataset: TextDataset
    settings: TrainSettings
    view: LessonView = field(default_factory=LessonView)
    notes: tuple[str, ...] = ()
    path: Path | None = None

    @property
    def seed(self) -> int:
        return self.setup.seed

    def experiment(self) -> Experiment:
        """A fresh experiment at the lesson's starting point (same seed: the same curve every time)."""
        return Experiment(Setup(self.setup.base, self.setup.method, dict(self.setup.options), self.setup.seed,
                                dict(self.setup.base_options)), self.dataset)


# ---- reading ---------------------------------------------------------------------------------------
def load_lesson(path: str | os.PathLike, data_file: str | os.PathLike | None = None) -> Lesson:
    """A lesson file; its setup's data file must lie in the lesson's folder unless named (`data_file`)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path.name}: is a folder, not a lesson file")
    if not path.is_file():
        raise ConfigError(f"{path}: no such lesson file")
    doc = read_json_object(path, path.name, ConfigError)
    return parse_lesson(doc, path.parent, path.name, path, data_file=data_file)


def parse_lesson(doc: dict[str, Any], folder: Path, where: str, path: Path | None = None, *,
                 data_file: str | os.PathLike | None = None) -> Lesson:
    if doc.get("format") != FORMAT:
        raise ConfigError(f"{where}: not a PEFT Studio lesson (its \"format\" should be \"{FORMAT}\")")
    if doc.get("version") != VERSION:
        raise ConfigError(f"{where}: lesson version {doc.get('version')!r} is not supported (this PEFT Studio "
                          f"reads version {VERSION})")
    _no_unknown(doc, {"format", "version", "title", "setup", "view", "notes"}, where, "")
    title = _get(doc, "title", str, where, "")
    if not title.strip():
        raise ConfigError(f"{where}: \"title\" is empty")
    if len(title) > MAX_TITLE_CHARS:
        raise ConfigError(f"{where}: \"title\" is {len(title):,} characters long; the limit is {MAX_TITLE_CHARS}")
    setup_doc = _get(doc, "setup", dict, where, "")
    setup, dataset, settings = parse_setup(setup_doc, folder, f"{where}: setup", data_file=data_file)
    view = _view(_get(doc, "view", dict, where, "", {}), where)
    notes = _notes(doc.get("notes", []), where)
    return Lesson(title.strip(), setup, dataset, settings, view, notes, path)


def _view(values: dict[str, Any], where: str) -> LessonView:
    _no_unknown(values, {f for f in LessonView.__dataclass_fields__}, where, "view.")
    zoom = _number(values, "zoom", where, 1.0, ZOOM_RANGE)
    scale = _number(values, "presentation_scale", where, 1.0, SCALE_RANGE)
    scroll = values.get("scroll")
    if scroll is not None:
        if (not isinstance(scroll, list) or len(scroll) != 2 or
                not all(_is_number(v) and math.isfinite(v) for v in scroll)):
            raise ConfigError(f"{where}: \"view.scroll\" should be [x, y] (two finite numbers) or null, not "
                              f"{json.dumps(scroll)[:40]}")
        scroll = (float(scroll[0]), float(scroll[1]))
    collapsed = values.get("collapsed_layers")
    if collapsed is not None and not isinstance(collapsed, bool):
        raise ConfigError(f"{where}: \"view.collapsed_layers\" should be true, false or null, not "
                          f"{json.dumps(collapsed)[:40]}")
    tab = _get(values, "selected_tab", str, where, "view.", "method")
    if tab not in TABS:
        raise ConfigError(f"{where}: \"view.selected_tab\" {tab!r} is not a tab; known: {', '.join(TABS)}")
    panels = _names(values, "hidden_panels", PANELS, where)
    controls = _names(values, "hidden_controls", CONTROLS, where)
    return LessonView(zoom, scroll, collapsed, scale, panels, controls, tab)


def _names(values: dict[str, Any], name: str, known: tuple[str, ...], where: str) -> tuple[str, ...]:
    items = _get(values, name, list, where, "view.", [])
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"{where}: \"view.{name}\" should list names (text), not {json.dumps(item)[:40]}")
        if item not in known:
            raise ConfigError(f"{where}: \"view.{name}\" names {item!r}, which is not one; known: {', '.join(known)}")
    if len(set(items)) != len(items):
        raise ConfigError(f"{where}: \"view.{name}\" repeats a name")
    return tuple(items)


def _notes(notes: Any, where: str) -> tuple[str, ...]:
    if isinstance(notes, str):
        notes = [notes]
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise ConfigError(f"{where}: \"notes\" should be a list of text")
    if len(notes) > MAX_NOTES:
        raise ConfigError(f"{where}: \"notes\" has {len(notes)} entries (at most {MAX_NOTES})")
    longest = max(map(len, notes), default=0)
    if longest > MAX_NOTE_CHARS or sum(map(len, notes)) > MAX_NOTES_CHARS:  # bounded to lay out in no time
        raise ConfigError(f"{where}: \"notes\" are too long ({longest:,} characters in one, "
                          f"{sum(map(len, notes)):,} in all; the limits are {MAX_NOTE_CHARS:,} and "
                          f"{MAX_NOTES_CHARS:,})")
    return tuple(n.strip() for n in notes if n.strip())


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(values: dict[str, Any], name: str, where: str, default: float, bounds: tuple[float, float]) -> float:
    value = values.get(name, default)
    if not _is_number(value) or not math.isfinite(value):
        raise ConfigError(f"{where}: \"view.{name}\" should be a number, not {json.dumps(value)[:40]}")
    if not bounds[0] <= value <= bounds[1]:
        raise ConfigError(f"{where}: \"view.{name}\" is {value}; it must be within [{bounds[0]:g}, {bounds[1]:g}]")
    return float(value)


def _get(doc: dict[str, Any], name: str, kind: type, where: str, prefix: str, default: Any = ...) -> Any:
    if name not in doc:
        if default is ...:
            raise ConfigError(f"{where}: missing \"{prefix}{name}\"")
        return default
    value = doc[name]
    if not isinstance(value, kind):
        kinds = {str: "text", dict: "an object", list: "a list"}
        raise ConfigError(f"{where}: \"{prefix}{name}\" should be {kinds.get(kind, kind.__name__)}, not "
                          f"{type(value).__name__} ({json.dumps(value)[:40]})")
    return value


def _no_unknown(doc: dict[str, Any], known: set[str], where: str, prefix: str) -> None:
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field \"{prefix}{unknown[0]}\"; known: {', '.join(sorted(known))}")


# ---- writing ---------------------------------------------------------------------------------------
def lesson_document(lesson: Lesson, folder: Path) -> dict[str, Any]:
    view = lesson.view
    return {
        "format": FORMAT, "version": VERSION, "title": lesson.title,
        "setup": setup_document(lesson.setup, lesson.dataset, lesson.settings, folder),
        "view": {"zoom": view.zoom, "scroll": list(view.scroll) if view.scroll is not None else None,
                 "collapsed_layers": view.collapsed_layers, "presentation_scale": view.presentation_scale,
                 "hidden_panels": list(view.hidden_panels), "hidden_controls": list(view.hidden_controls),
                 "selected_tab": view.selected_tab},
        "notes": list(lesson.notes),
    }


def save_lesson(path: str | os.PathLike, lesson: Lesson) -> Path:
    """Write the lesson (atomically); it is checked by reading it back the way `load_lesson` does."""
    path = Path(path)
    document = lesson_document(lesson, path.parent)
    # refuse what could not be opened (the data file is the user's own, wherever it is)
    data = dict(lesson.dataset.recipe).get("path")
    parse_lesson(json.loads(json.dumps(document)), path.parent, path.name, data_file=data)
    text = json.dumps(document, indent=2) + "\n"
    return safe_io.write_text_atomically(path, text, OutputError)


# ---- shipped and user lessons ------------------------------------------------------------------------
def lesson_names() -> list[str]:
    """The shipped lessons' names (file stems)."""
    return [p.stem for p in resource_files("lessons", "*.json")]


def user_lessons_dir() -> Path:
    """Where the user's own lessons go (File > Save lesson… offers it): lessons/ in the user data folder."""
    return user_data_dir() / "lessons"


@dataclass(frozen=True)
class LessonEntry:
    """One lesson file as `peft-studio lessons` lists it; a file that cannot be read says why."""

    name: str  # the file stem: what `train --setup NAME` takes
    path: Path
    shipped: bool
    lesson: Lesson | None
    problem: str | None = None


def lesson_catalogue(user_dir: str | os.PathLike | None = None) -> list[LessonEntry]:
    """The shipped lessons, then the user's (`user_dir`, default `user_lessons_dir()`), each sorted by name."""
    folder = Path(user_dir).expanduser() if user_dir is not None else user_lessons_dir()
    user_files = sorted(p for p in folder.glob("*.json") if p.is_file()) if folder.is_dir() else []
    entries = []
    for path, shipped in [*((p, True) for p in resource_files("lessons", "*.json")), *((p, False) for p in user_files)]:
        try:
            entries.append(LessonEntry(path.stem, path, shipped, load_lesson(path)))
        except PeftStudioError as exc:
            entries.append(LessonEntry(path.stem, path, shipped, None, str(exc)))
    return entries


def find_lesson(name: str, user_dir: str | os.PathLike | None = None) -> Path | None:
    """The lesson file a bare name means: the user's own first, then the shipped one; None when neither."""
    if not name or any(sep in name for sep in "/\\") or name.startswith("."):
        return None
    folder = Path(user_dir).expanduser() if user_dir is not None else user_lessons_dir()
    for candidate in (folder / f"{name}.json", resource_path("lessons", f"{name}.json")):
        if candidate.is_file():
            return candidate
    return None


def load_setup_or_lesson(source: str | os.PathLike, user_dir: str | os.PathLike | None = None,
                         data_file: str | os.PathLike | None = None) -> tuple[Setup, TextDataset, TrainSettings]:
    """What `train --setup` and `recipe --setup` read: a setup file, a lesson file (its setup), or a lesson's name.

    A path that exists wins over a lesson of the same name; the file's "format" says which kind it is. Its data
    file must lie in its own folder unless the user names it (`data_file`, setup_file.DataOutsideError)."""
    path = Path(source).expanduser()
    if not os.path.lexists(path):
        found = find_lesson(str(source), user_dir)
        if found is None:
            raise ConfigError(f"{source}: no such setup file, and no lesson has that name (`peft-studio lessons` "
                              "lists them)")
        path = found
    if path.is_dir():
        raise ConfigError(f"{path.name}: is a folder, not a setup file")
    doc = safe_io.read_json_object(path, path.name, ConfigError, limit=MAX_SETUP_BYTES)
    if doc.get("format") == FORMAT:
        lesson = parse_lesson(doc, path.parent, path.name, path, data_file=data_file)
        return lesson.setup, lesson.dataset, lesson.settings
    if doc.get("format") != SETUP_FORMAT:
        raise ConfigError(f"{path.name}: not a PEFT Studio setup or lesson (its \"format\" should be "
                          f"\"{SETUP_FORMAT}\" or \"{FORMAT}\")")
    return parse_setup(doc, path.parent, path.name, data_file=data_file)


def load_shipped_lesson(name: str) -> Lesson:
    path = resource_path("lessons", f"{name}.json")
    if not path.is_file():
        raise ConfigError(f"no shipped lesson {name!r} (have: {', '.join(lesson_names()) or 'none'})")
    return load_lesson(path)
