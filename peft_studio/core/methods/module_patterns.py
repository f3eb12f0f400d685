"""PEFT's target_modules / feedforward_modules: a list of names or one regular expression, made safe.

Python's `re` has no timeout, so time is bounded by what a pattern may be and what it is matched
against, not by a clock:
- the pattern is at most MAX_PATTERN_CHARS long and must compile;
- it may not repeat something that itself repeats or branches (`(a+)+`, `(a|aa)*`: exponential
  backtracking), nor use backreferences, and it holds at most MAX_UNBOUNDED_REPEATS open-ended
  repeats (`.*` after `.*` after `.*`... is polynomial with the repeat count as the exponent);
- it is matched only against the base's own module names, each at most MAX_NAME_CHARS long
  (about 40 for BERT), so the worst case is about MAX_NAME_CHARS ** MAX_UNBOUNDED_REPEATS / 24
  steps per name — milliseconds.
"""

from __future__ import annotations

import re
from typing import Any

try:  # Python 3.11+: the parser re compiles with
    from re import _parser as sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_parse  # type: ignore[no-redef]

from ..errors import PeftStudioError

MAX_PATTERN_CHARS = 512
MAX_UNBOUNDED_REPEATS = 4
MAX_NAME_CHARS = 200
MAX_LIST_ENTRIES = 1_000  # real target lists name under 20 modules
_OPEN_ENDED = 16  # a repeat allowing more than this many copies counts as unbounded
_REPEATS = {sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT, getattr(sre_parse, "POSSESSIVE_REPEAT", None)} - {None}
_REFERENCES = {sre_parse.GROUPREF, sre_parse.GROUPREF_EXISTS}


def _walk(items: Any, inside_repeat: bool, counts: list[int], fail: Any) -> None:
    """Check a parsed pattern; `counts[0]` gathers the open-ended repeats."""
    for op, arg in items:
        if op in _REFERENCES:
            fail("backreferences are not allowed")
        if op in _REPEATS:
            low, high, body = arg
            grows = high == sre_parse.MAXREPEAT or high > _OPEN_ENDED
            if inside_repeat and (grows or _repeats_or_branches(body)):
                fail("it repeats a part that itself repeats (like (a+)+), which can take exponential time")
            if grows:
                counts[0] += 1
            if grows and _repeats_or_branches(body):
                fail("it repeats a part that itself repeats or has alternatives (like (a|aa)*), which can "
                     "take exponential time")
            _walk(body, inside_repeat or grows, counts, fail)
        elif op is sre_parse.SUBPATTERN:
            _walk(arg[-1], inside_repeat, counts, fail)
        elif op is sre_parse.BRANCH:
            for branch in arg[1]:
                _walk(branch, inside_repeat, counts, fail)
        elif op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
            _walk(arg[1], inside_repeat, counts, fail)
        elif op is getattr(sre_parse, "ATOMIC_GROUP", None):
            _walk(arg, inside_repeat, counts, fail)


def _repeats_or_branches(items: Any) -> bool:
    for op, arg in items:
        if op in _REPEATS and (arg[1] == sre_parse.MAXREPEAT or arg[1] > 1):
            return True
        if op is sre_parse.BRANCH:
            return True
        if op is sre_parse.SUBPATTERN and _repeats_or_branches(arg[-1]):
            return True
        if op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT) and _repeats_or_branches(arg[1]):
            return True
    return False


def compile_pattern(pattern: str, where: str, error: type[PeftStudioError]) -> re.Pattern[str]:
    """The compiled pattern, or `error` saying why it is refused (see the module docstring)."""
    def fail(reason: str) -> None:
        raise error(f"{where}: the regular expression {pattern[:60]!r} is refused: {reason}")

    if len(pattern) > MAX_PATTERN_CHARS:
        fail(f"it is {len(pattern)} characters long (the limit is {MAX_PATTERN_CHARS})")
    try:
        parsed = sre_parse.parse(pattern)
        compiled = re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError) as exc:
        fail(f"it does not compile ({exc})")
    counts = [0]
    _walk(parsed, False, counts, fail)
    if counts[0] > MAX_UNBOUNDED_REPEATS:
        fail(f"it has {counts[0]} open-ended repeats (the limit is {MAX_UNBOUNDED_REPEATS})")
    return compiled


class ModuleSelector:
    """A checked target_modules / feedforward_modules value: None, a list of names, or a regex."""

    def __init__(self, value: Any, field: str, where: str, error: type[PeftStudioError]) -> None:
        self.field = field
        self.names: list[str] | None = None
        self.pattern: re.Pattern[str] | None = None
        self.given = value is not None
        if value is None:
            return
        if isinstance(value, str):
            self.pattern = compile_pattern(value, f"{where}: {field}", error)
        elif isinstance(value, list) and len(value) <= MAX_LIST_ENTRIES and all(
                isinstance(v, str) and 0 < len(v) <= MAX_NAME_CHARS for v in value):
            self.names = list(value)
        else:
            raise error(f"{where}: {field} should be a list of at most {MAX_LIST_ENTRIES:,} module names (each at "
                        f"most {MAX_NAME_CHARS} characters) or one regular expression (text), not {str(value)[:60]}")

    def matches(self, name: str) -> bool:
        """PEFT's rule: a regex must match the whole name; a list entry matches the name or a dotted suffix.
        Names longer than MAX_NAME_CHARS never match (no base has them)."""
        if len(name) > MAX_NAME_CHARS:
            return False
        if self.pattern is not None:
            return self.pattern.fullmatch(name) is not None
        if self.names is not None:
            return any(name == entry or name.endswith("." + entry) for entry in self.names)
        return False
