"""The plugin contracts: a method defined in a test (plugin_shift.py), registered at run time, is everywhere;
the registry is the one list; the click model selects exactly what it promises."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from torch import nn

import peft_studio
from peft_studio.cli import main, method_flags
from peft_studio.core.data import load_builtin
from peft_studio.core.errors import ConfigError
from peft_studio.core.methods import METHODS, get_method
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.studio import StudioState


def test_a_registered_method_is_listed_gets_flags_and_a_census(shift_method, capsys):
    assert main(["methods"]) == 0
    assert "shift-test" in capsys.readouterr().out
    assert "--start" in {f.flag for f in method_flags()}
    code = main(["inspect", "--base", "tiny", "--method", "shift-test", "--start", "0.5", "--targets", "q,k",
                 "--layers", "1", "--json"])
    assert code == 0
    import json

    census = json.loads(capsys.readouterr().out)
    shifts = [t for t in census["tensors"] if t["name"].endswith(".shift")]
    assert [t["name"] for t in shifts] == ["base.layers.1.attn.q.shift", "base.layers.1.attn.k.shift"]
    assert all(t["trainable"] and t["owner"] == "method" for t in shifts)
    experiment = Experiment(Setup("tiny", "shift-test", {"start": 0.5}), load_builtin("intents"))
    assert experiment.method_parameter_count() == experiment.census().trainable_of("method") == 2 * 32
    assert main(["train", "--method", "shift-test", "--start", "99", "--steps", "1"]) == 2
    assert "start must be in [-10, 10]" in capsys.readouterr().err


def test_the_registry_is_the_one_list():
    """Every method is a class in its own module under core/methods, and no other code names one: the window, the
    CLI and the core ask the registry and the method's hooks (bases may name methods in the defaults they declare,
    and lessons and exercises in the content they teach)."""
    methods_dir = Path(peft_studio.__file__).parent / "core" / "methods"
    for name, method in METHODS.items():
        module = sys.modules[type(method).__module__]
        assert Path(module.__file__).parent == methods_dir, f"{name} is defined outside core/methods"
    source = Path(peft_studio.__file__).parent
    core = [p for p in source.glob("core/**/*.py") if not {"methods", "bases", "teaching"} & set(p.parts)]
    for path in [*source.glob("gui/**/*.py"), source / "cli.py", *core]:
        text = path.read_text()
        for name in ("prompt-tuning", "prefix-tuning", '"ia3"', '"qlora"', '"bitfit"'):
            assert name not in text, f"{path.name} names method {name}: method knowledge belongs to the method"


@pytest.mark.parametrize("name", list(METHODS))
def test_the_card_quotes_the_code_that_runs(name):
    method = get_method(name)
    config = method.default_config()
    code = method.code(config)
    assert code
    package_source = "\n".join(p.read_text() for p in Path(peft_studio.__file__).parent.glob("core/**/*.py"))
    for part in code.replace("  # then: ", "\n").replace("  # each: ", "\n").splitlines():
        line = part.split("  # ")[0]
        assert line in package_source, f"{name}: {line!r} is not in the code"


def test_the_adapter_card_names_the_chosen_nonlinearity():
    method = get_method("adapter")
    assert "nn.ReLU" in method.code(method.config({"nonlinearity": "relu"}))
    assert "relu(W_down h)" in method.live_formula(method.config({"nonlinearity": "relu"}))


# ---- the click model: exactly what it promises ------------------------------------------------------
def _states():
    for base, dataset in (("tiny", "intents"), ("seed-pooled", "seed-intents")):
        for method in ("lora", "adapter", "ia3", "prefix-tuning", "head-only"):
            state = StudioState(Setup(base, "head-only"), load_builtin(dataset))
            if state.set_method(method, {}):
                yield base, method, state


@pytest.mark.parametrize("base, method, state", list(_states()), ids=lambda v: v if isinstance(v, str) else "")
def test_each_click_adds_or_removes_exactly_that_site_and_the_tooltip_number_is_the_change(base, method, state):
    for site in state.experiment.base.sites():
        clicked = state.method_for_site(site)
        if not site.available_for(clicked):
            assert state.click_effect(site) is None
            continue
        before = state.selected_site_ids() if clicked == state.setup.method else set()
        trainable = state.census.trainable
        effect = state.click_effect(site)
        assert effect is not None
        assert state.toggle_site(site.id), site.id
        after = state.selected_site_ids()
        expected = before | {site.id} if effect.adds else before - {site.id}
        if effect.method == "head-only":
            expected = set()
        assert after == expected, (base, method, site.id)
        assert state.census.trainable - trainable == effect.delta, (base, method, site.id)
        state.undo()


def test_switching_base_keeps_the_sites_that_exist_and_says_which_were_dropped():
    state = StudioState(Setup("tiny", "lora"), load_builtin("intents"))
    notices: list[str] = []
    failures: list[tuple] = []
    state.on("notice", notices.append)
    state.on("failed", lambda *args: failures.append(args))
    state.toggle_site("layers.0.attn.k")
    assert state.set_base("seed-pooled")
    assert failures == [] and state.setup.method == "lora"
    assert state.selected_site_ids() == {"proj"}  # none of tiny's sites exist there: LoRA's default
    assert notices and "defaults" in notices[-1]
    assert state.set_base("tiny") and state.set_method("prefix-tuning")
    assert state.set_base("seed-pooled")  # no attention there: the base's default method
    assert state.setup.method == "adapter" and "cannot be used" in notices[-1] and failures == []
    assert state.set_base("minilm") and state.setup.method == "adapter" and failures == []


def test_locked_state_refuses_edits_and_undo():
    state = StudioState()
    state.set_training(steps=5)
    state.lock()
    failures: list[tuple] = []
    state.on("failed", lambda *args: failures.append(args))
    assert not state.set_method("ia3") and not state.can_undo and not state.undo()
    assert not state.set_training(steps=9) and len(failures) == 2
    state.unlock()
    assert state.can_undo and state.undo() and state.settings.steps != 5


def test_training_settings_are_checked_before_they_are_kept():
    state = StudioState()
    failures: list[tuple] = []
    state.on("failed", lambda *args: failures.append(args))
    assert not state.set_training(lr=-1.0)
    assert state.settings.lr > 0 and failures and "lr" in failures[0][1]


def test_targets_for_sites_round_trips_any_set():
    base = Experiment(Setup("tiny", "lora"), load_builtin("intents")).base
    method = get_method("lora")
    usable = method.usable_sites(base)
    for chosen in ([usable[0]], usable[:3], usable[::2], usable):
        options = method.options_for_sites(chosen, base, {"r": 2})
        assert {s.id for s in method.selected_sites(method.config(options), base)} == {s.id for s in chosen}
        assert options["r"] == 2


def test_a_selection_that_matches_nothing_is_refused():
    with pytest.raises(ConfigError, match="select no site"):
        Experiment(Setup("tiny", "lora", {"targets": "layers.0.attn.q", "layers": "1"}), load_builtin("intents"))


def test_merge_then_detach_restores_the_base_bit_for_bit():
    experiment = Experiment(Setup("tiny", "lora", {"r": 2}), load_builtin("intents"))
    before = experiment.model.base_fingerprint  # taken before the method attached
    for module in experiment.model.modules():
        if hasattr(module, "lora_B"):
            nn.init.normal_(module.lora_B)
            module.merge()
    assert experiment.base.state_dict()["layers.0.attn.q.base_layer.weight"].sum() != 0
    experiment.model.detach_method()
    assert experiment.base.fingerprint() == before


def test_pre_ln_encoders_are_described_and_run():
    dataset = load_builtin("intents")
    experiment = Experiment(Setup("tiny", "adapter", base_options={"norm_placement": "pre"}), dataset)
    layer = next(b for b in experiment.base.blocks() if b.kind == "layer")
    kinds = [(c.kind, c.residual) for c in layer.children]
    assert kinds == [("norm", False), ("attention", False), ("add", True), ("norm", False), ("ffn", False),
                     ("add", True)]
    assert experiment.predict(["refund my order"]).shape == (1, dataset.num_labels)
    with pytest.raises(ConfigError, match="norm_placement"):
        Experiment(Setup("tiny", "lora", base_options={"norm_placement": "sideways"}), dataset)


def test_an_option_shared_by_methods_parses_as_each_methods_kind():
    """One CLI flag per option name (cli.method_flags): where methods give a name different kinds, the flag takes
    text and each method's config reads it as its own kind (a switch could never turn a true default off)."""
    import dataclasses

    from peft_studio.cli import _field_kind, build_parser, method_flags

    kinds: dict[str, dict[str, type]] = {}
    for name, method in METHODS.items():
        for f in dataclasses.fields(method.config_cls):
            kinds.setdefault(f.name, {})[name] = _field_kind(f)
    flags = {flag.field: flag for flag in method_flags()}
    for field, by_method in kinds.items():
        if len(set(by_method.values())) > 1:
            assert flags[field].kind is str, field
            for method, kind in by_method.items():
                args = build_parser().parse_args(["inspect", "--method", method, flags[field].flag,
                                                  "false" if kind is bool else "0" if kind in (int, float) else "x"])
                value = METHODS[method].config({field: getattr(args, field)}).to_dict()[field] \
                    if kind is not str else getattr(args, field)
                assert isinstance(value, kind), (field, method, value)
        else:
            assert flags[field].kind is next(iter(by_method.values())), field
