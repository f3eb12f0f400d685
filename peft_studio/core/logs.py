"""Logging: a log file in the user's state folder, and unexpected errors kept with their tracebacks.

A user mistake is a PeftStudioError: its message names the thing and the fix, and that is all a user sees. Any
other exception is a bug. It is still shown as one line (a dialog, or `error:` on the command line), but its
traceback is written to the log file and kept here, so the window's dialog can offer it under "Details…" and
`--verbose` can print it: nothing is lost, and nothing is shown raw.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
from collections import OrderedDict
from logging.handlers import RotatingFileHandler
from pathlib import Path

LOGGER_NAME = "peft_studio"
LOG_FILE_NAME = "peft-studio.log"
MAX_LOG_BYTES = 1_000_000  # a few runs' worth; three old files are kept beside it
KEPT_DETAILS = 20  # tracebacks of the last unexpected errors, for the window's Details…

log = logging.getLogger(LOGGER_NAME)
_details: OrderedDict[str, str] = OrderedDict()
_details_lock = threading.Lock()  # workers report from their own threads


def state_folder() -> Path:
    """Where per-user state lives: $XDG_STATE_HOME/peft-studio (default ~/.local/state/peft-studio)."""
    root = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(root) / "peft-studio"


def log_file() -> Path:
    return state_folder() / LOG_FILE_NAME


def configure_logging(verbose: bool = False) -> Path | None:
    """Send the studio's log to its file (INFO and up) and, with `verbose`, everything to stderr. Returns the file,
    or None when the state folder cannot be written (the studio then runs without a log file, never fails)."""
    log.setLevel(logging.DEBUG)
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    if verbose:
        console = logging.StreamHandler()
        console.setLevel(logging.DEBUG)
        console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        log.addHandler(console)
    path = log_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(path, maxBytes=MAX_LOG_BYTES, backupCount=3, encoding="utf-8")
    except OSError:
        return None
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    return path


def report_unexpected(exc: BaseException, where: str) -> str:
    """Log an unexpected error (not a user mistake) with its traceback and keep the traceback for the window's
    Details…; returns the one line to show."""
    message = f"{type(exc).__name__}: {exc}"
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    log.error("%s: unexpected error\n%s", where, details.rstrip())
    with _details_lock:
        _details[message] = details
        _details.move_to_end(message)
        while len(_details) > KEPT_DETAILS:
            _details.popitem(last=False)
    return message


def details_for(text: str) -> str | None:
    """The traceback of a recent unexpected error whose one-line message appears in `text` (the newest first)."""
    with _details_lock:
        for message in reversed(_details):
            if message and message in text:
                return _details[message]
    return None
