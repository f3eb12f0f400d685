"""Which methods fit the current base: the window asks every method on a base that already carries one."""

from __future__ import annotations

import pytest
from method_table import fitting_options, method_names

from peft_studio.core.data import load_builtin
from peft_studio.core.model.experiment import Experiment, Setup


@pytest.mark.parametrize("attached", method_names())
def test_every_method_says_whether_it_fits_a_base_another_method_is_attached_to(attached):
    """The method list greys out what cannot fit (gui/diagram/describe.py, on the GUI thread) by validating each
    method's settings on the current experiment's base, whose sites may hold another method's wrapper (IA3's
    scaled Linear, a LoRA layer, a merged update): an answer or a ConfigError, never a crash."""
    data = load_builtin("intents")
    for base_name in ("tiny", "tiny-decoder"):  # the encoder, or the decoder for decoder-only methods
        options = fitting_options(attached, Experiment(Setup(base_name, "head-only", {}, seed=0), data).base)
        if options is not None:
            break
    assert options is not None, f"{attached} fits neither toy base"
    base = Experiment(Setup(base_name, attached, options, seed=0), data).base
    for name in method_names():
        options = fitting_options(name, base)
        assert options is None or isinstance(options, dict)
