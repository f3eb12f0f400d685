"""The method plugin contract: everything method-specific lives on the method, in its own module.

A method declares its config (whose fields become CLI flags and GUI form rows), the sites it may use
on a base, the inverse (which options a clicked set of sites means), its closed-form count, the
formula text with live numbers, the shape changes it causes, its glyph and colour, its card text,
and the real code line that runs. The registry (`methods/__init__.py`) is the one list of methods.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..bases.frozen import FrozenBase
from ..bases.sites import KV_PREFIX, NORM, PROMPT, Site
from ..errors import ConfigError
from ..model.studio_model import StudioModel
from .config import MethodConfig, layer_ranges, make_config
from .targets import default_targets, resolve_targets, targets_for_sites

# The seed's map of the family, in its four groups (the family map's sections, in this order): where the trainable
# part goes in the data flow (before or beside attention), inside the layers as a new module or vector, as a
# reparameterisation of a frozen weight (foldable into it), or as a selection of the base's own tensors.
PROMPT_SIDE = "prompt side"
INSIDE_LAYERS = "inside the layers"
REPARAMETERISED = "reparameterised"
SELECTIVE = "selective"
FAMILY_GROUPS = (PROMPT_SIDE, INSIDE_LAYERS, REPARAMETERISED, SELECTIVE)


@dataclass(frozen=True)
class MethodCard:
    """The seed's map row for a method, in the app's words."""

    where: str  # where the trainable part sits
    intuition: str
    advantages: str
    limitations: str
    formula: str  # the computation, symbolically


@dataclass(frozen=True)
class ShapeChange:
    """How a method changes the shapes a diagram draws: extra input tokens, extra attention keys."""

    input_tokens: int = 0  # prompt tuning: sequence length L -> L + n
    key_tokens: int = 0  # prefix tuning: attention keys L -> L + n (the sequence stays L)
    frozen_key_tokens: int = 0  # Cartridges: the first of those keys stay fixed (an attention sink)


@functools.cache  # the source does not change while the process runs; the diagram asks per site
def code_line(function: Callable[..., Any], contains: str) -> str:
    """The line of `function` that contains `contains`, read from the source that runs.

    The card quotes this instead of a hand-written line, so it can never drift from the code."""
    source = textwrap.dedent(inspect.getsource(function))
    for line in source.splitlines():
        if contains in line:
            code = line.split("  # ", 1)[0].strip()
            return code.removeprefix("return ").strip()
    raise ValueError(f"{function.__qualname__} has no line containing {contains!r}")


class Method:
    """A PEFT method. Subclasses set the class attributes and implement the hooks they need."""

    name: str = ""
    title: str = ""
    config_cls: type[MethodConfig] = MethodConfig
    site_kinds: tuple[str, ...] = ()  # site kinds its parts attach to (a click there keeps this method)
    claims_kinds: tuple[str, ...] = ()  # site kinds whose click chooses this method when another is current
    glyph: str = "+"  # drawn on its insertion points
    colour: str = "#f07f16"  # its curves and badges
    card: MethodCard
    trains_base: bool = False  # True when base tensors themselves train (full, bitfit)
    quantizes_base: bool = False  # True when it stores the frozen Linears in 4 bits (QLoRA: a recipe loads NF4)
    peft_type: str | None = None  # the Hugging Face PEFT adapter type it exchanges ("LORA", "IA3", ...), or None
    # Without a peft_type: the registered method with one that comes nearest, and why (a recipe's refusal says it)
    peft_nearest: tuple[str, str] | None = None
    # adapter_config.json fields its translator reads, beyond hf_peft's common ones: name -> (JSON types, words)
    peft_config_fields: dict[str, tuple[tuple[type, ...], str]] = {}
    # task types whose adapters of this type PEFT itself cannot run on the base: task_type -> why (refused)
    peft_unsupported_tasks: dict[str, str] = {}
    # number ranges it checks in adapter_config.json beyond (or instead of) hf_peft's common ones: name -> (low, high)
    peft_config_ranges: dict[str, tuple[float, float]] = {}
    # ---- the method test table (tests/method_table.py) ------------------------------------------------------
    # The cross-method tests (counts, outputs and exchange against PEFT, training, causality, memory) draw their
    # configurations from these, so a new method is tested by adding its file. `targets` and `layers` are drawn
    # from the base's usable sites and layers, not listed here; values must be valid on every base.
    # option -> values to draw from; a tuple of options -> tuples of values for options only valid together
    example_space: dict[Any, tuple[Any, ...]] = {"freeze_head": (False, True)}
    peft_space: dict[Any, tuple[Any, ...]] | None = None  # PEFT config field -> values: adapters PEFT itself makes
    # how close an exported adapter's outputs in PeftModel are to the studio's; None: not comparable on a
    # full-precision base (the method's frozen base is not the one PEFT loads), tested on its own
    exchange_tolerance: float | None = 1e-4
    # PEFT can build it on the meta device, so its count is compared on meta-device decoders (BOFT's permutation
    # matrices are filled entry by entry, which the meta device cannot do: its count is compared on MiniLM only)
    peft_on_meta_device: bool = True
    # Linear layer types it cannot take, as PEFT refuses them: layer type ("Conv1D") -> why; the registry passes
    # them to the bases (bases/sites.py LAYER_REFUSALS), which grey those sites out with the reason
    refused_layers: dict[str, str] = {}
    # an option whose value PEFT's merge_and_unload applies at random (BOFT's multiplicative dropout, even in eval):
    # PEFT's merged weight is then no reference for the studio's deterministic merge
    peft_merge_draws: str | None = None
    # its group on the seed's map (FAMILY_GROUPS); None: derived from what it is (see `group`)
    family_group: str | None = None
    # why the method cannot train on the next-token task (a part that lets position t read later tokens), or None
    next_token_refusal: str | None = None
    # its outputs read padded positions (Lily's router averages over the whole batch): the trainer then keeps each
    # batch's padding columns instead of cutting those no text uses (core/runs/padding.py)
    reads_padding: bool = False
    rotation_side: str = "input"  # where rotations() matrices act: "input" (h = W0 R x) or "output" (h = R W0 x)
    # how far the exchange tests move each trainable tensor (N(0, 1) times this) to stand for training: a method
    # whose tensors multiply into a large update (scaled bases, ...) takes a smaller step, so that the encoder's
    # softmaxes stay out of saturation, where two correct float32 implementations part by more than the tolerance
    perturbation: float = 0.1

    # ---- the family map ---------------------------------------------------------------------------
    def group(self) -> str:
        """Its group on the seed's map: the declared `family_group`, else what its sites and flags say (a method
        that trains base tensors or only norms, or none but the head, is selective; one on the prompt or the K/V
        prefix sits on the prompt side; any other adds its part inside the layers). A reparameterisation of a
        weight cannot be told from its sites: such a method declares it."""
        if self.family_group is not None:
            return self.family_group
        kinds = set(self.site_kinds)
        if self.trains_base or kinds <= {NORM}:
            return SELECTIVE
        if kinds <= {PROMPT, KV_PREFIX}:
            return PROMPT_SIDE
        return INSIDE_LAYERS

    # ---- configuration ------------------------------------------------------------------------
    def default_config(self) -> MethodConfig:
        return self.config_cls()

    def config(self, options: dict[str, Any], base: FrozenBase | None = None) -> MethodConfig:
        """A checked config from loose options (None values mean 'the default')."""
        return make_config(self.config_cls, options)

    def validate(self, config: MethodConfig, base: FrozenBase) -> None:
        config.check_ranges()
        self.selected_sites(config, base)

    # ---- where it goes ------------------------------------------------------------------------
    def usable_sites(self, base: FrozenBase) -> list[Site]:
        """Every site of this base this method could put a part on (the diagram's insertion points)."""
        return [s for s in base.site_index().sites if s.kind in self.site_kinds and s.available_for(self.name)]

    def selected_sites(self, config: MethodConfig, base: FrozenBase) -> list[Site]:
        """The sites this config attaches to on this base (validated)."""
        return []

    def options_for_sites(self, sites: list[Site], base: FrozenBase, current: dict[str, Any]) -> dict[str, Any]:
        """The inverse of selected_sites: options that select exactly `sites` (the click model).

        `current` holds the method's other options, which are kept."""
        return dict(current)

    def effective_options(self, config: MethodConfig, base: FrozenBase) -> dict[str, Any]:
        """Every option with the value in force on this base: a None ('the default') replaced by what it
        resolves to, so a form shows what is really selected."""
        values = config.to_dict()
        sites = self.selected_sites(config, base)
        if values.get("targets") is None and "targets" in values:
            values["targets"] = ",".join(dict.fromkeys(s.name for s in sites))
        if values.get("layers") is None and "layers" in values:
            values["layers"] = layer_ranges({s.layer for s in sites if s.layer is not None})
        return values

    def field_choices(self, field_name: str, base: FrozenBase) -> tuple[str, ...] | None:
        """The values a text field may take on this base (a form shows them as a list), or None."""
        for f in dataclasses.fields(self.config_cls):
            if f.name == field_name:
                return f.metadata.get("choices")
        return None

    # ---- what it adds -------------------------------------------------------------------------
    def attach(self, model: StudioModel, config: MethodConfig) -> None:
        """Swap trainable parts into the base; must draw random numbers in a fixed order."""

    def parameter_count(self, config: MethodConfig, base: FrozenBase) -> int:
        """Trainable parameters this method adds or unfreezes, in closed form (head excluded)."""
        return 0

    def site_glyph(self, config: MethodConfig, base: FrozenBase, site: Site) -> str:
        """What a chosen insertion point of this method shows (its glyph; LoRA shows per-module ranks)."""
        return self.glyph

    def formula_text(self, config: MethodConfig, base: FrozenBase) -> str:
        """The count formula with this config's numbers, e.g. '2 layers x 2 x (8 x 32) = 1,024'."""
        return f"{self.parameter_count(config, base):,}"

    def live_formula(self, config: MethodConfig) -> str:
        """The card's computation with this config's numbers, e.g. 'h = W0 x + (16/8 = 2) B A x'."""
        return self.card.formula

    def code(self, config: MethodConfig) -> str:
        """The real line of code that applies this method's part (see `code_line`)."""
        return ""

    def shape_change(self, config: MethodConfig) -> ShapeChange:
        return ShapeChange()

    def shape_notes(self, config: MethodConfig, base: FrozenBase, seq_len: int) -> list[str]:
        """Each change of shape in words (the seed's structural illustrations)."""
        return []

    def rotations(self, base: FrozenBase) -> dict[str, Any]:
        """For methods that rotate (OFT, BOFT, HRA, RoAd): the matrix each adapted layer applies now, by module path
        (a detached [n, n] tensor acting on the side `rotation_side` names; each layer's own `rotation()`), for
        lenses such as an angle spectrum; {} for the others."""
        from .mergeable import weight_updates

        with torch.no_grad():
            return {path: layer.rotation().detach() for path, layer in weight_updates(base)
                    if callable(getattr(layer, "rotation", None))}
    # ---- training hooks (core/runs/train.py calls these; no-ops unless a method trains with a schedule) ----
    def start_training(self, model: StudioModel, config: MethodConfig, first_step: int, end_step: int) -> None:
        """Before the first step of a run over steps [first_step, end_step): check or set up what a schedule
        needs (a ConfigError here costs the user nothing)."""

    def training_loss(self, model: StudioModel, config: MethodConfig) -> torch.Tensor | None:
        """A term added to the loss that training minimises (AdaLoRA's orthogonal regularisation), or None. The
        loss a run reports stays the task's."""
        return None

    def after_step(self, model: StudioModel, config: MethodConfig, step: int) -> None:
        """After each optimizer step, the step's gradients still in place (AdaLoRA's rank allocation). It changes
        tensors, never which modules the model holds (the trainer lists them once a run: train.mode_setter)."""

    def step_report(self, model: StudioModel, config: MethodConfig) -> dict[str, Any]:
        """Plain values (no tensors: they cross threads) describing the method's live state after a step, e.g.
        AdaLoRA's per-site rank grid; {} for most methods."""
        return {}

    # ---- Hugging Face PEFT exchange (core/interop/hf_peft.py calls these; see methods/peft_format.py) ---------
    def peft_export(self, base: FrozenBase, config: MethodConfig) -> tuple[dict[str, Any], dict[str, Any]]:
        """adapter_config.json settings of this attached method and its tensors by PEFT key; AdapterFileError
        when this config has no PEFT form."""
        from ..errors import AdapterFileError

        raise AdapterFileError(f"export to PEFT format: method {self.name!r} has no PEFT adapter format")

    def peft_claims(self, peft_config: dict[str, Any]) -> bool:
        """Whether an adapter of this method's peft_type is this method's (LORA with use_dora is DoRA's)."""
        return True

    def peft_translate(self, peft_config: dict[str, Any], tensors: dict[str, Any],
                       where: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Studio options and tensors by studio parameter name from a PEFT adapter (keys without PEFT's
        prefix). Options may name `targets`; if not, they come from the tensors' modules."""
        from ..errors import AdapterFileError

        raise AdapterFileError(f"{where}: method {self.name!r} cannot import PEFT adapters")

    def peft_claims_any(self) -> bool:
        """Whether some adapter of its peft_type imports as this method (QLoRA takes LoRA's: it claims none)."""
        return True

    def peft_import_notes(self, peft_config: dict[str, Any], where: str) -> list[str]:
        """What importing an adapter with these settings does differently from how it was made (said to the user,
        never silent), e.g. an initialisation that only chose starting values."""
        return []

    def peft_accepts(self, method_name: str) -> bool:
        """Whether an adapter translated for `method_name` loads into a model using this method."""
        return method_name == self.name

    def peft_check_model(self, base: FrozenBase, options: dict[str, Any], where: str) -> None:
        """Refuse a model whose settings (beyond tensor shapes) differ from the adapter's options."""

    def peft_evaluated(self, config: MethodConfig) -> bool:
        """Whether its PEFT file holds what the trainable parts compute rather than the parts themselves (a
        reparameterisation PEFT evaluates on save, e.g. P-tuning's encoder), so an import trains fewer numbers."""
        return False

    def peft_notes(self, config: MethodConfig, base: FrozenBase) -> list[str]:
        """Lines for the exported folder's README: how to reproduce the studio's logits from PEFT's outputs."""
        return []

    # ---- lens: what training changed at this method's sites (core/lenses) -------------------------------
    def lens(self, experiment: Any, sentence: str) -> list[Any]:
        """LensFigures of what the trained parts did, for `sentence` where the lens reads a forward pass. The
        default shows ΔW of every weight-update layer (methods/mergeable.py), so such methods need nothing more."""
        from ..lenses.spectra import weight_update_figures

        return weight_update_figures(experiment.base, site_paths(experiment.base))


class TargetedMethod(Method):
    """A method whose sites are named by `targets` x `layers` (LoRA, IA3, DoRA, VeRA, LayerNorm tuning): one
    selection rule and one click-model inverse for all of them."""

    targets_default_from: str | None = None  # a method whose base defaults apply when the base names none for this

    def targets_in_force(self, config: MethodConfig, base: FrozenBase) -> str | None:
        """The targets in force: the config's, else (None) the base's default for this method."""
        fallback = self.targets_default_from
        if config.targets is None and fallback and self.name not in base.method_defaults():
            return ",".join(default_targets(base, fallback))
        return config.targets

    def selected_sites(self, config: MethodConfig, base: FrozenBase) -> list[Site]:
        return resolve_targets(base, self.name, self.site_kinds, self.targets_in_force(config, base), config.layers)

    def options_for_sites(self, sites: list[Site], base: FrozenBase, current: dict[str, Any]) -> dict[str, Any]:
        return {**current, **targets_for_sites(sites, self.usable_sites(base), base.num_layers)}


def site_paths(base: FrozenBase) -> dict[str, str]:
    """Module path -> site id, for naming what sits at a path (the first site of a path wins: a Linear before its
    input-side site)."""
    paths: dict[str, str] = {}
    for site in base.sites():
        paths.setdefault(site.module_path, site.id)
    return paths


def prompt_slot(base: FrozenBase) -> str | None:
    """The base's prompt slot, which also says where token positions start (BERT's embeddings.prompt, a
    decoder's model.prompt); None when the base has none."""
    return next((s.module_path for s in base.site_index().sites if s.kind == PROMPT), None)


def require_kind(base: FrozenBase, method: str, kind: str) -> list[Site]:
    """Usable sites of a kind, or ConfigError quoting the base's reason."""
    every = base.site_index().sites
    sites = [s for s in every if s.kind == kind and s.available_for(method)]
    if sites:
        return sites
    reasons = [s.unavailable[method] for s in every if s.kind == kind and method in s.unavailable]
    reason = reasons[0] if reasons else f"it has no {kind} sites"
    raise ConfigError(f"{method} cannot be used on base {base.name!r}: {reason}")
