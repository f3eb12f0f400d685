"""Lesson notes as formatted text that loads nothing: a small Markdown subset turned into HTML the studio
builds itself from escaped text.

Notes are meant to be formatted (a teacher bolds the point of the lesson), but they come from a lesson
file, and HTML from a file is not safe to hand to Qt: an <img> naming /dev/zero or a FIFO hangs the
window, a table nested a thousand deep takes seconds to lay out. So the text is escaped first (no tag
of the file's survives) and only these marks become tags:

    **bold**   *italic*   `code`   a line starting with "- " or "* " is a bullet
    [text](link)  shows "text (link)" as plain text: no link is followed, no file is opened

Size is bounded (the lesson loader refuses longer notes; `notes_html` cuts again), and every pattern
is a linear regular expression over at most MAX_NOTES_CHARS characters, so rendering is bounded in time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape

MAX_NOTE_CHARS = 2_000  # one note; the shipped lessons' longest is about 230
MAX_NOTES_CHARS = 20_000  # all notes of a lesson together
MAX_TITLE_CHARS = 200

_BOLD = re.compile(r"\*\*([^*\n]{1,500}?)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*([^*\n]{1,500}?)\*(?![*\w])")
_CODE = re.compile(r"`([^`\n]{1,500}?)`")
_LINK = re.compile(r"\[([^\]\n]{1,300})\]\(([^)\s]{1,500})\)")
_BULLET = re.compile(r"^\s*[-*]\s+")


def _inline(text: str) -> str:
    """One escaped line with the inline marks as tags (code first: no marks inside code)."""
    parts = _CODE.split(text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:  # inside `code`
            out.append(f"<code>{part}</code>")
            continue
        part = _LINK.sub(lambda m: f"{m[1]} ({m[2]})", part)
        part = _BOLD.sub(r"<b>\1</b>", part)
        out.append(_ITALIC.sub(r"<i>\1</i>", part))
    return "".join(out)


def note_html(note: str) -> str:
    """One note: paragraphs of lines, bullets as a list."""
    lines = escape(note[:MAX_NOTE_CHARS], quote=True).splitlines()
    html: list[str] = []
    in_list = False
    for line in lines:
        bullet = _BULLET.match(line)
        if bullet and not in_list:
            html.append("<ul style='margin:0'>")
        elif not bullet and in_list:
            html.append("</ul>")
        in_list = bool(bullet)
        body = _inline(line[bullet.end():] if bullet else line)
        html.append(f"<li>{body}</li>" if bullet else f"{body}<br>")
    if in_list:
        html.append("</ul>")
    return "".join(html).removesuffix("<br>")


def notes_html(notes: Sequence[str]) -> str:
    """A lesson's notes, one paragraph each with a bullet, as bounded HTML that names no resource."""
    shown: list[str] = []
    total = 0
    for note in notes:
        if total >= MAX_NOTES_CHARS:
            break
        note = note[:MAX_NOTES_CHARS - total]
        total += len(note)
        shown.append(f"<p style='margin:0 0 8px 0'>• {note_html(note)}</p>")
    return "".join(shown)
