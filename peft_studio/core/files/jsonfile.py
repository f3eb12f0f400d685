"""Read a JSON object from a user's file, turning every failure into that caller's typed error.

Kept for its callers; the bounded reading and parsing live in `safe_io`."""

from __future__ import annotations

from .safe_io import read_json_object

__all__ = ["read_json_object"]
