"""What the window shows, as Qt-free state beside the studio's setup: presentation mode, which layers are
collapsed or shown, the diagram's zoom, hidden panels and controls, the side panels, the selected tab and
a lesson's notes. A lesson restores it in one call; the window observes it and sets its widgets.

Keeping it here (not in widgets) lets a lesson be opened, saved or checked without a window, and gives
the window's helpers one narrow thing to change instead of reaching into the window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .teaching.lesson import CONTROLS, PANELS, Lesson, LessonView

Listener = Callable[..., None]
LARGE_BASE_LAYERS = 12  # deeper bases open collapsed and expand a range of layers at a time
SHOWN_LAYERS = 4  # layers a large base shows when expanded, unless the user picks a range


@dataclass(frozen=True)
class View:
    presentation: bool = False
    collapsed: bool | None = None  # None: automatic (deep stacks collapse)
    shown_layers: tuple[int, int] | None = None  # the expanded range (first, last) on a large base; None: all
    zoom: float = 1.0  # 1 = the fitted size
    scroll: tuple[float, float] | None = None  # scene point at the view's centre; None: centred
    hidden_panels: frozenset[str] = frozenset()
    hidden_controls: frozenset[str] = frozenset()
    side_panels: bool = True  # the method/training/try-it tabs and the tensor table
    selected_tab: str = "method"
    notes_title: str = ""
    notes: tuple[str, ...] = ()


@dataclass
class ViewState:
    """The current View; `set(...)` changes fields and tells observers which ones changed."""

    view: View = field(default_factory=View)
    _listeners: list[Listener] = field(default_factory=list, repr=False)

    def on_change(self, callback: Callable[[set[str]], None]) -> None:
        self._listeners.append(callback)

    def set(self, **changes: Any) -> set[str]:
        """Change these fields; observers hear the names of those that really changed."""
        known = {f.name for f in fields(View)}
        unknown = set(changes) - known
        if unknown:
            raise TypeError(f"unknown view fields: {', '.join(sorted(unknown))}")
        before = self.view
        self.view = replace(before, **changes)
        changed = {name for name in changes if getattr(before, name) != getattr(self.view, name)}
        if changed:
            for callback in list(self._listeners):
                callback(changed)
        return changed

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "view":
            raise AttributeError(name)
        return getattr(self.view, name)

    def apply_lesson(self, lesson: Lesson) -> set[str]:
        """The lesson's view, all at once: what it hides and nothing left hidden by the previous lesson, its
        notes (or none: a lesson without notes clears the previous lesson's)."""
        v: LessonView = lesson.view
        return self.set(presentation=v.presentation_scale > 1.0, collapsed=v.collapsed_layers, shown_layers=None,
                        zoom=v.zoom, scroll=v.scroll, hidden_panels=frozenset(v.hidden_panels),
                        hidden_controls=frozenset(v.hidden_controls), selected_tab=v.selected_tab,
                        notes_title=lesson.title, notes=tuple(lesson.notes))

    def lesson_view(self) -> LessonView:
        """The view as a lesson file stores it (Save lesson…)."""
        v = self.view
        return LessonView(zoom=v.zoom, scroll=v.scroll, collapsed_layers=v.collapsed,
                          presentation_scale=2.0 if v.presentation else 1.0,
                          hidden_panels=tuple(p for p in PANELS if p in v.hidden_panels),
                          hidden_controls=tuple(c for c in CONTROLS if c in v.hidden_controls),
                          selected_tab=v.selected_tab)


def layers_collapsed(view: View, layer_count: int) -> bool:
    """Whether the diagram draws the repeated layers as one box: the user's choice, else automatic (more
    than two layers, or more than one on a projector)."""
    if view.collapsed is not None:
        return view.collapsed
    return layer_count > (1 if view.presentation else 2)


def shown_range(view: View, layer_count: int) -> tuple[int, int] | None:
    """The layers an expanded diagram draws (first, last); None when it draws them all. A large base shows a
    few at a time (building 80 expanded layers took a minute and drew a 35-pixel strip)."""
    if view.shown_layers is not None:
        first, last = view.shown_layers
        first = max(0, min(first, layer_count - 1))
        return first, max(first, min(last, layer_count - 1))
    if layer_count > LARGE_BASE_LAYERS:
        return 0, SHOWN_LAYERS - 1
    return None


def parse_layer_range(text: str, layer_count: int) -> tuple[int, int]:
    """'7' or '4-9' (or '4–9') as (first, last) within the base; ValueError says what is allowed."""
    cleaned = text.strip().replace("–", "-").replace(" ", "")
    parts = cleaned.split("-")
    if not cleaned or len(parts) > 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"give a layer (e.g. 7) or a range (e.g. 4-9) between 0 and {layer_count - 1}")
    first, last = int(parts[0]), int(parts[-1])
    if first > last:
        first, last = last, first
    if last >= layer_count:
        raise ValueError(f"this base has layers 0 to {layer_count - 1}")
    return first, last
