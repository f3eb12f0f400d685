"""LoRA's rank_pattern and alpha_pattern: per-module ranks and alphas, matched as PEFT matches them.

PEFT (peft.utils.other.get_pattern_key, 0.21) takes, for a module named `key` in the model, the first
pattern `p` (in the dict's order) for which `re.match(rf"(.*\\.)?({p})$", key)` succeeds; modules no pattern
matches keep `r` / `lora_alpha`. The studio matches the same way against the module's Hugging Face name (and,
on a BERT encoder, that name under `bert.`, as BertForSequenceClassification names it) and its site id, so
`query`, `encoder.layer.0.attention.self.value` and `layers.0.attn.v` all work.

As an option a pattern is text: a JSON object (`{"query": 4}`, what an adapter_config.json holds) or
`name=value` pairs separated by commas (`query=4,layer.0.attention.self.value=16`). Every pattern goes through
module_patterns' checks (length, no nested repeats) before it is matched.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError, PeftStudioError
from .module_patterns import compile_pattern

MAX_PATTERNS = 1024
MAX_RANK = 4096


def parse_pattern(text: str | Mapping[str, Any] | None, field: str, integer: bool,
                  error: type[PeftStudioError] = ConfigError) -> dict[str, float | int]:
    """{pattern: value} in the given order; a bad entry is `error` naming the field and the entry."""
    if text is None or text == "" or text == {}:
        return {}
    if isinstance(text, Mapping):
        raw = dict(text)
    elif isinstance(text, str) and text.lstrip().startswith("{"):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise error(f"{field}: not a JSON object ({exc.msg})") from None
        if not isinstance(raw, dict):
            raise error(f"{field}: should be an object of module name -> value")
    elif isinstance(text, str):
        raw = {}
        for item in text.split(","):
            name, sep, value = item.rpartition("=")
            if not sep or not name.strip():
                raise error(f"{field}: {item.strip()!r} is not name=value (e.g. query=4)")
            raw[name.strip()] = value.strip()
    else:
        raise error(f"{field}: should be text such as query=4 or an object")
    if len(raw) > MAX_PATTERNS:
        raise error(f"{field}: {len(raw)} entries (at most {MAX_PATTERNS})")
    out: dict[str, float | int] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not name:
            raise error(f"{field}: a pattern must be a module name or a regular expression")
        compile_pattern(rf"(.*\.)?({name})$", f"{field} {name!r}", error)
        out[name] = _value(value, f"{field} {name!r}", integer, error)
    return out


def _value(value: Any, where: str, integer: bool, error: type[PeftStudioError]) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise error(f"{where}: should be a number (got {value!r})")
    try:
        number = float(value)
    except ValueError:
        raise error(f"{where}: should be a number (got {value!r})") from None
    if not math.isfinite(number) or number <= 0:
        raise error(f"{where}: should be a positive number (got {value!r})")
    if integer:
        if not number.is_integer() or number > MAX_RANK:
            raise error(f"{where}: a rank must be a whole number in [1, {MAX_RANK}] (got {value!r})")
        return int(number)
    return number


def pattern_value(patterns: Mapping[str, float | int], names: list[str], default: float | int) -> float | int:
    """PEFT's get_pattern_key: the first pattern that matches one of the module's names, else the default."""
    for pattern, value in patterns.items():
        compiled = re.compile(rf"(.*\.)?({pattern})$")
        if any(compiled.match(name) for name in names):
            return value
    return default


def pattern_text(patterns: Mapping[str, float | int]) -> str | None:
    """The option text for a pattern dict (JSON keeps the order and any regex), None when empty."""
    return json.dumps(dict(patterns)) if patterns else None
