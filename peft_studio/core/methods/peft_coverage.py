"""Which of the installed PEFT's adapter types the studio covers (`peft-studio methods --peft-coverage`).

A type is *exchanged* when a registered method has it as its peft_type and reads and writes PEFT folders, *drawn
only* when a registered method has it but no PEFT exchange, *not applicable* when it cannot adapt one frozen base the
way the studio draws it, and *not yet* when it could but no method here implements it. The registry decides the
first two; the two tables below, kept in this one place, say why for the rest. tests/core/test_peft_coverage.py
fails when the installed PEFT has a type that is in neither, or when a table contradicts the registry.

The installed PEFT's types are read from its source (peft/utils/peft_types.py) without importing it: peft is a
test-only reference, heavy to import, and not needed to list its names.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .method import Method

NOT_APPLICABLE: dict[str, str] = {
    "XLORA": "a learned mixture of several already-trained LoRA adapters, routed per token by a classifier: it "
             "composes adapters instead of adapting a frozen base",
    "POLY": "multi-task routing over an inventory of LoRA skills: every example needs a task id",
    "MULTITASK_PROMPT_TUNING": "one prompt shared by many tasks, scaled per task: every example needs a task id",
    "CPT": "context-aware prompt tuning for in-context learning: each input carries token-type masks of its "
           "demonstrations",
}

NOT_YET: dict[str, str] = {
    # the remaining types that apply to Linear, Embedding or norm layers
    "SHADOW": "ShadowPEFT, a small parallel decoder injected into each block (decoders)",
}


@dataclass(frozen=True)
class Coverage:
    peft_type: str
    status: str  # "exchanged", "drawn only", "not applicable", "not yet"
    detail: str  # the studio methods, or why not

    def line(self, width: int) -> str:
        if self.status in ("exchanged", "drawn only"):
            return f"{self.peft_type:{width}}  {self.status}: {self.detail}"
        return f"{self.peft_type:{width}}  {self.status} ({self.detail})"


def installed_peft() -> tuple[str, list[str]]:
    """(version, adapter types) of the installed peft, read from its source; ConfigError when none is installed."""
    spec = importlib.util.find_spec("peft")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("--peft-coverage lists the installed peft's adapter types, and peft is not installed "
                          "(pip install peft)")
    source = Path(next(iter(spec.submodule_search_locations))) / "utils" / "peft_types.py"
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read peft's adapter types from {source} ({exc})") from None
    types: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "PeftType":
            for item in node.body:
                if isinstance(item, ast.Assign) and isinstance(item.value, ast.Constant) \
                        and isinstance(item.value.value, str):
                    types.append(item.value.value)
    if not types:
        raise ConfigError(f"{source} defines no PeftType members: not a peft this studio can read")
    try:
        version = importlib.metadata.version("peft")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown version"
    return version, types


def _exchanges(method: Method) -> bool:
    return type(method).peft_export is not Method.peft_export and type(method).peft_translate is not \
        Method.peft_translate


def coverage(methods: dict[str, Method], peft_types: list[str]) -> list[Coverage]:
    """Each PEFT type's status, in PEFT's order."""
    by_type: dict[str, list[Method]] = {}
    for method in methods.values():
        if method.peft_type:
            by_type.setdefault(method.peft_type, []).append(method)
    rows = []
    for peft_type in peft_types:
        owners = by_type.get(peft_type, [])
        if owners:
            names = ", ".join(m.name for m in owners)
            rows.append(Coverage(peft_type, "exchanged" if any(_exchanges(m) for m in owners) else "drawn only",
                                 names))
        elif peft_type in NOT_APPLICABLE:
            rows.append(Coverage(peft_type, "not applicable", NOT_APPLICABLE[peft_type]))
        elif peft_type in NOT_YET:
            rows.append(Coverage(peft_type, "not yet", NOT_YET[peft_type]))
        else:
            rows.append(Coverage(peft_type, "unclassified", "new in this peft: add it to peft_coverage.py"))
    return rows


def coverage_lines(methods: dict[str, Method]) -> list[str]:
    version, types = installed_peft()
    rows = coverage(methods, types)
    counts = {status: sum(r.status == status for r in rows)
              for status in ("exchanged", "drawn only", "not applicable", "not yet", "unclassified")}
    summary = ", ".join(f"{count} {status}" for status, count in counts.items() if count or status != "unclassified")
    width = max(len(t) for t in types)
    return [f"peft {version}: {len(types)} adapter types; {summary}", *(row.line(width) for row in rows)]
