"""The method test table: every cross-method test iterates over the registry through these helpers.

A method brings its rows with its own file: `example_space` (studio options to draw from), `peft_space` (fields of
adapters PEFT itself makes) and `exchange_tolerance`. Targets and layers are drawn here from the base's usable
sites and layers, so nothing in the tests lists methods or their options by hand. A key may also be a tuple of
names whose values are tuples: options that are only valid together and so are drawn together (OFT's r and
oft_block_size, exactly one of which is non-zero).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st

from peft_studio.core.bases.frozen import FrozenBase
from peft_studio.core.errors import ConfigError
from peft_studio.core.methods import METHODS, Method
from peft_studio.core.methods.config import make_config
from peft_studio.core.methods.fitting import fitting_options, option_pairs, valid_values  # noqa: F401 - tests import it here
from peft_studio.core.methods.method import TargetedMethod


def method_names(where=None) -> list[str]:
    """Registered methods (optionally those for which `where(method)` holds), in registry order."""
    return [name for name, method in METHODS.items() if where is None or where(method)]


def exchanging(method: Method) -> bool:
    """Exports to PEFT with outputs comparable on a full-precision base."""
    return method.peft_type is not None and method.exchange_tolerance is not None


def peft_made(method: Method) -> bool:
    """PEFT itself can make adapters the studio imports as this method."""
    return method.peft_type is not None and method.peft_space is not None


def applies(method_name: str, base: FrozenBase) -> bool:
    """The method's default config is valid on this base (prefix tuning needs attention, ...)."""
    method = METHODS[method_name]
    try:
        method.validate(method.default_config(), base)
    except ConfigError:
        return False
    return True


def _fields(method: Method) -> set[str]:
    return {f.name for f in dataclasses.fields(method.config_cls)}


@functools.cache
def _valid_values(method_name: str, base: FrozenBase) -> dict[Any, tuple[Any, ...]]:
    return valid_values(method_name, base)


def _draw_table(data, space: dict[Any, tuple[Any, ...]]) -> dict[str, Any]:
    return {name: value for key, values in space.items()
            for name, value in option_pairs(key, data.draw(st.sampled_from(values)))}


def _draw_subset(data, values: list, most: int = 4) -> list:
    return data.draw(st.lists(st.sampled_from(values), min_size=1, max_size=min(most, len(values)), unique=True))


def draw_options(data, method_name: str, base: FrozenBase) -> dict[str, Any]:
    """Options for this method drawn from its example_space, plus targets (a targeted method's usable site names)
    and layers; the whole set is valid on the base (an invalid combination is rejected, not skipped)."""
    method = METHODS[method_name]
    options = _draw_table(data, _valid_values(method_name, base))
    fields = _fields(method)
    if isinstance(method, TargetedMethod) and "targets" in fields:
        names = sorted({site.name for site in method.usable_sites(base)})
        options["targets"] = ",".join(_draw_subset(data, names))
    if "layers" in fields and base.num_layers > 0 and data.draw(st.booleans()):  # else the default: every layer
        layers = _draw_subset(data, list(range(base.num_layers)))
        options["layers"] = ",".join(map(str, sorted(layers)))
    try:
        method.validate(make_config(method.config_cls, options), base)
    except ConfigError:
        assume(False)
    return options


LAYER_PREFIX = re.compile(r"^(?:.*?\.)?\d+\.")  # 'encoder.layer.3.' or 'model.layers.3.': up to the layer index


def peft_target_name(hf_name: str) -> str:
    """The name a user gives PEFT for a module in every layer: 'attention.self.query' for
    'encoder.layer.3.attention.self.query' (PEFT matches target_modules as suffixes)."""
    return LAYER_PREFIX.sub("", hf_name, count=1)


def draw_peft_config(data, method_name: str, base: FrozenBase, peft) -> dict[str, Any]:
    """adapter_config.json fields of an adapter PEFT makes for this method: its peft_space drawn, plus (for a
    targeted method) target_modules drawn among the base's usable modules by PEFT-style suffix names,
    layers_to_transform where the PEFT config has it, and feedforward_modules as a subset of the targets."""
    method = METHODS[method_name]
    fields = _draw_table(data, method.peft_space)
    config: dict[str, Any] = {"peft_type": method.peft_type, "task_type": "FEATURE_EXTRACTION", **fields}
    peft_fields = {f.name for f in dataclasses.fields(peft.PEFT_TYPE_TO_CONFIG_MAPPING[method.peft_type])}
    if isinstance(method, TargetedMethod) and "target_modules" not in config:
        names = sorted({peft_target_name(base.hf_module(site.module_path)) for site in method.usable_sites(base)
                        if base.hf_module(site.module_path)})
        config["target_modules"] = _draw_subset(data, names)
        if "feedforward_modules" in peft_fields:
            config["feedforward_modules"] = data.draw(st.lists(st.sampled_from(config["target_modules"]),
                                                               unique=True))
        if "layers_to_transform" in peft_fields and data.draw(st.booleans()):
            config["layers_to_transform"] = sorted(_draw_subset(data, list(range(base.num_layers))))
    return config
