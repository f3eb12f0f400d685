"""Read a JSON object from a user's file, turning every failure into that caller's typed error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import PeftStudioError


def read_json_object(path: Path, label: str, error: type[PeftStudioError]) -> dict[str, Any]:
    """The parsed object, or `error` naming `label` (e.g. "minilm/config.json") and what is wrong."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{label}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise error(f"{label}: expected a JSON object")
    return data
