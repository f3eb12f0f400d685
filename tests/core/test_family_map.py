"""The family map (core/runs/family_map.py): every registered method's figures on one base, held against the census
of the experiment the studio would build, the weight-update contract and the adapter file; sorting; methods that do
not apply say why; building the map never touches the studio's setup."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors import safe_open

from peft_studio.cli import main
from peft_studio.core.data import load_builtin
from peft_studio.core.errors import ConfigError, PeftStudioError
from peft_studio.core.files.adapter_file import save_adapter
from peft_studio.core.methods import METHODS
from peft_studio.core.methods.mergeable import mergeable_layers
from peft_studio.core.methods.method import FAMILY_GROUPS, INSIDE_LAYERS, SELECTIVE, Method
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.family_map import (
    FIGURE_KEYS,
    META_LATENCY,
    family_map,
    figure,
    grouped,
    map_base,
    map_tiles,
    sort_tiles,
)
from peft_studio.core.runs.family_miniature import HEAD, miniature
from peft_studio.core.studio import StudioState


@pytest.fixture(scope="module")
def intents():
    return load_builtin("intents")


@pytest.fixture(scope="module")
def tiny_map(intents):
    return family_map(Setup("tiny", "lora", {}, 0), intents)


# ---- groups: a declaration on each method ---------------------------------------------------------------------
def test_every_shipped_method_declares_its_group_on_the_seeds_map():
    for name, method in METHODS.items():
        assert "family_group" in vars(type(method)), f"{name}: set family_group in its class"
        assert method.group() in FAMILY_GROUPS


def test_a_method_without_a_declaration_gets_one_from_what_it_is_and_its_tile(shift_method, intents):
    assert shift_method.family_group is None and shift_method.group() == INSIDE_LAYERS  # a module inside a layer
    unfreezing = type("Unfreezing", (Method,), {"trains_base": True})()
    assert unfreezing.group() == SELECTIVE
    (tile,) = family_map(Setup("tiny", "lora"), intents, methods=[shift_method.name]).tiles  # registered at run time
    census = Experiment(Setup("tiny", shift_method.name, {}, 0), intents).census()
    assert (tile.group, tile.trainable, tile.mergeable) == (INSIDE_LAYERS, census.trainable, False)


# ---- figures against the census, the contract and the file ---------------------------------------------------
def test_each_tile_equals_the_census_of_the_experiment_the_studio_builds(tiny_map, intents):
    assert [t.method for t in tiny_map.tiles] == list(METHODS)
    applied = [t for t in tiny_map.tiles if t.applies]
    assert len(applied) >= len(METHODS) - 2 and any(t.fitted for t in applied)  # a default sized for real models
    for tile in applied:
        experiment = Experiment(Setup("tiny", tile.method, dict(tile.options), 0), intents)
        census = experiment.census()
        assert (tile.trainable, tile.share, tile.adapter_bytes) == (
            census.trainable, census.trainable_percent, census.trainable_bytes), tile.method
        assert tile.method_trainable == census.trainable - census.trainable_of("head")
        assert tile.mergeable is True or not mergeable_layers(experiment.model), tile.method
        if tile.mergeable:
            assert mergeable_layers(experiment.model), tile.method
        assert tile.sites == tuple(s.id for s in experiment.selected_sites())
        assert tile.group == experiment.method.group()
        assert tile.latency_ms is not None and tile.bare_ms > 0, tile.method  # measured on a base with weights


def test_adapter_bytes_are_the_tensor_bytes_an_adapter_file_holds(tiny_map, intents, tmp_path):
    for tile in [t for t in tiny_map.tiles if t.applies][:3]:
        experiment = Experiment(Setup("tiny", tile.method, dict(tile.options), 0), intents)
        path = save_adapter(experiment, tmp_path / f"{tile.method}.safetensors")
        with safe_open(str(path), "pt") as handle:
            tensors = [handle.get_tensor(key) for key in handle.keys()]  # noqa: SIM118 - a safetensors handle
            stored = sum(t.numel() * t.element_size() for t in tensors)
        assert stored == tile.adapter_bytes


def test_the_miniature_lights_the_sites_and_tensors_that_train(tiny_map, intents):
    base = map_base(Setup("tiny", "lora"), intents)
    shape = miniature(base)
    assert len(shape.rows) == base.num_layers + 2
    assert {s.id for s in base.sites()} <= shape.keys
    for tile in (t for t in tiny_map.tiles if t.applies):
        assert set(tile.sites) <= tile.lit, tile.method
        assert (HEAD in tile.lit) == (tile.trainable > tile.method_trainable), tile.method
    everything = max((t for t in tiny_map.tiles if t.applies), key=lambda t: t.trainable)
    assert METHODS[everything.method].trains_base  # every tensor trains: every row of the miniature is lit
    assert all(any(cell.key in everything.lit for cell in row.cells) for row in shape.rows)


def test_a_method_that_does_not_apply_is_a_tile_with_the_builds_reason():
    dataset = load_builtin("texts")
    result = family_map(Setup("tiny-decoder", "lora"), dataset)
    skipped = [t for t in result.tiles if not t.applies]
    assert skipped and len(result.tiles) == len(METHODS)
    for tile in skipped:
        with pytest.raises(PeftStudioError) as refused:
            Experiment(Setup("tiny-decoder", tile.method, {}, 0), dataset)
        assert tile.skipped == str(refused.value)
        assert tile.trainable == 0 and not tile.lit


def test_a_meta_device_base_is_counted_and_its_latency_not_measured(intents):
    result = family_map(Setup("qwen2.5-0.5b", "lora"), load_builtin("intents"),
                        methods=[n for n in METHODS if n != "full"][:6])
    applied = [t for t in result.tiles if t.applies]
    assert applied and result.latency_batch == 0
    for tile in applied:
        assert tile.latency_ms is None and tile.latency_note == META_LATENCY
        census = Experiment(Setup("qwen2.5-0.5b", tile.method, dict(tile.options), 0), intents).census()
        assert tile.trainable == census.trainable


# ---- the studio is never touched; stop ------------------------------------------------------------------------
def test_building_the_map_changes_neither_the_studio_nor_the_base_it_built(intents):
    state = StudioState(Setup("tiny", "lora", {"r": 2}, 3), intents)
    before = (dataclasses.replace(state.setup), state.experiment.frozen_fingerprint(), state.can_undo,
              state.experiment)
    base = map_base(state.setup, state.dataset)
    fingerprint = base.fingerprint()
    tiles = list(map_tiles(base, miniature(base), state.setup.seed, state.dataset))
    assert len(tiles) == len(METHODS) and base.fingerprint() == fingerprint
    assert [n for n, _ in base.named_modules()] == [n for n, _ in map_base(state.setup, intents).named_modules()]
    assert (state.setup, state.experiment.frozen_fingerprint(), state.can_undo, state.experiment) == before
    assert fingerprint == state.experiment.model.base_fingerprint  # the very weights the studio has


def test_a_stopped_map_ends_between_methods(intents):
    base = map_base(Setup("tiny", "lora"), intents)
    done: list = []
    for tile in map_tiles(base, miniature(base), 0, intents, should_stop=lambda: len(done) >= 3):
        done.append(tile)
    assert len(done) == 3


# ---- sorting --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", FIGURE_KEYS)
def test_sorting_by_any_figure_orders_the_known_values_and_puts_the_rest_last(tiny_map, key):
    chosen = figure(key)
    for descending in (False, True):
        ordered = sort_tiles(tiny_map.tiles, key, descending)
        assert sorted(t.method for t in ordered) == sorted(t.method for t in tiny_map.tiles)
        if key == "registry":
            assert [t.method for t in ordered] == list(METHODS)[::-1 if descending else 1]
            continue
        known = [chosen.value(t) for t in ordered if t.applies and chosen.value(t) is not None]
        assert known == sorted(known, reverse=descending)
        assert all(not t.applies or chosen.value(t) is None for t in ordered[len(known):])
    with pytest.raises(ConfigError, match="unknown figure"):
        sort_tiles(tiny_map.tiles, "speed")


def test_groups_come_in_the_seeds_order(tiny_map):
    groups = [g for g, _ in grouped(tiny_map.tiles)]
    assert groups == [g for g in FAMILY_GROUPS if g in groups] and len(groups) == len(FAMILY_GROUPS)


# ---- the command line ------------------------------------------------------------------------------------------
def test_methods_family_map_prints_every_method_by_group(capsys):
    assert main(["methods", "--family-map", "--base", "tiny", "--sort", "trainable", "--descending"]) == 0
    out = capsys.readouterr().out
    for group in FAMILY_GROUPS:
        assert f"[{group}]" in out
    rows = {line.split()[0] for line in out.splitlines() if line and not line.startswith(("[", "method", "family"))}
    assert rows == set(METHODS)


@pytest.mark.parametrize("argv, message", [
    (["methods", "--sort", "trainable"], "--sort only with --family-map"),
    (["methods", "--family-map", "--base", "nope"], "nope"),
    (["methods", "--family-map", "--peft-coverage"], "not both"),
])
def test_bad_family_map_requests_are_one_error_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_the_latency_is_timed_not_typed(tiny_map):
    measured = [t.latency_ms for t in tiny_map.tiles if t.latency_ms is not None]
    assert len(set(measured)) > 1 and all(torch.isfinite(torch.tensor(measured)))
