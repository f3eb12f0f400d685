"""Where the user's own PEFT Studio files live (runs, lessons): the platform's per-user data folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def user_data_dir() -> Path:
    """XDG_DATA_HOME (or ~/.local/share) on Linux, ~/Library/Application Support on macOS, %APPDATA% on Windows;
    with peft-studio/ appended. Not created here: whoever writes creates it."""
    if sys.platform == "win32":
        root = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Application Support"
    else:
        root = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return root / "peft-studio"
