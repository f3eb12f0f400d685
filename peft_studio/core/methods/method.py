"""What every PEFT method provides: a config, attach, a closed-form count, and its teaching card."""

from __future__ import annotations

from dataclasses import dataclass

from ..bases.frozen import FrozenBase
from ..bases.sites import Site
from ..errors import ConfigError
from ..model import PeftModel
from .config import MethodConfig


@dataclass(frozen=True)
class MethodCard:
    """The seed's map row for a method, in the app's words."""

    where: str  # where the trainable part sits
    intuition: str
    advantages: str
    limitations: str
    formula: str  # the computation, symbolically
    code: str  # the line of code that does it


class Method:
    """A PEFT method: subclasses set the class attributes and implement the three hooks."""

    name: str = ""
    title: str = ""
    config_cls: type[MethodConfig] = MethodConfig
    site_kinds: tuple[str, ...] = ()  # the site kinds its parts attach to (drives the diagram)
    card: MethodCard

    def default_config(self) -> MethodConfig:
        return self.config_cls()

    def selected_sites(self, config: MethodConfig, base: FrozenBase) -> list[Site]:
        """The sites this config attaches to on this base (validated)."""
        return []

    def attach(self, model: PeftModel, config: MethodConfig) -> None:
        """Swap trainable parts into the base; must draw random numbers in a fixed order."""

    def parameter_count(self, config: MethodConfig, base: FrozenBase) -> int:
        """Trainable parameters this method adds or unfreezes, in closed form (head excluded)."""
        return 0

    def formula_text(self, config: MethodConfig, base: FrozenBase) -> str:
        """The count formula with this config's numbers, e.g. '2 layers x 2 x (8 x 32) = 1,024'."""
        return f"{self.parameter_count(config, base):,}"

    def shape_notes(self, config: MethodConfig, base: FrozenBase, seq_len: int) -> list[str]:
        """Each change of shape in words (the seed's structural illustrations)."""
        return []

    def validate(self, config: MethodConfig, base: FrozenBase) -> None:
        config.check_ranges()
        self.selected_sites(config, base)


def usable_sites(base: FrozenBase, method: str, kind: str) -> list[Site]:
    """Sites of one kind that this method can use on this base."""
    return [s for s in base.sites() if s.kind == kind and s.available_for(method)]


def require_kind(base: FrozenBase, method: str, kind: str) -> list[Site]:
    """Usable sites of a kind, or ConfigError quoting the base's reason."""
    sites = usable_sites(base, method, kind)
    if sites:
        return sites
    reasons = [s.unavailable[method] for s in base.sites() if s.kind == kind and method in s.unavailable]
    reason = reasons[0] if reasons else f"it has no {kind} sites"
    raise ConfigError(f"{method} cannot be used on base {base.name!r}: {reason}")
