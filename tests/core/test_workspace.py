"""The Qt-free workspace beside the studio: sites indexed once per base (the same answers as a scan), edits as
prepare + commit (so a window can build on a worker thread), visible jobs, the view state a lesson restores,
the comparison board's one budget, and no "best" for timing noise."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peft_studio.core.bases import create_base
from peft_studio.core.bases.sites import LINEAR_INPUT, longest_prefix
from peft_studio.core.data import load_builtin
from peft_studio.core.errors import ConfigError
from peft_studio.core.jobs import FINISHED, STOPPED, STOPPING, JobBoard, duration_text
from peft_studio.core.methods import get_method
from peft_studio.core.methods.targets import resolve_targets
from peft_studio.core.model.census import take_census
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.compare import COLUMNS, best_rows
from peft_studio.core.runs.comparison import Comparison
from peft_studio.core.studio import BuildFailure, Built, Edit, StudioState
from peft_studio.core.teaching.lesson import LessonView, load_shipped_lesson
from peft_studio.core.view import ViewState, layers_collapsed, parse_layer_range, shown_range

DATA = load_builtin("intents")


@pytest.fixture(scope="module")
def bases():
    tokenizer = DATA.make_tokenizer()
    return {"tiny": create_base("tiny", tokenizer), "tiny-decoder": create_base("tiny-decoder", tokenizer),
            "gpt2": create_base("gpt2"), "llama-3-8b": create_base("llama-3-8b")}


# ---- the site index answers as the scans it replaces ------------------------------------------------------
def _scan(target, sites, base) -> list:
    """The matching rule by scanning: the one site with that id, else those whose short name equals it or whose
    Hugging Face module name is it or ends with "." + it (a module name means the module's output, so an input
    site answers to its own name and id only)."""
    exact = [s for s in sites if s.id == target]
    if exact:
        return exact[:1]
    return [s for s in sites if s.name == target or (s.kind != LINEAR_INPUT and _hf_matches(target, s, base))]


def _hf_matches(target, site, base) -> bool:
    hf_name = base.hf_module(site.module_path)
    return hf_name is not None and (hf_name == target or hf_name.endswith("." + target))


@pytest.mark.parametrize("name", ["tiny", "tiny-decoder", "gpt2", "llama-3-8b"])
def test_index_finds_the_same_sites_and_owners_as_a_scan(bases, name):
    base = bases[name]
    index = base.site_index()
    sites = base.sites()
    assert list(index.sites) == sites and base.site_index() is index  # built once, kept
    names = {s.name for s in sites} | {s.id for s in sites}
    names |= {".".join(base.hf_module(s.module_path).split(".")[k:]) for s in sites if base.hf_module(s.module_path)
              for k in range(3)}
    for target in sorted(names):
        assert index.named(target) == _scan(target, sites, base), target
    model = Experiment(Setup(name, "lora"), DATA).model if not base.on_meta_device else None
    tensor_paths = [n.removeprefix("base.").rsplit(".", 1)[0] for n, _ in (model or base).named_parameters()]
    for path in tensor_paths:
        expected = longest_prefix(path, ((s.id, s.module_path) for s in sites))
        found = index.owner(path)
        assert (found.id if found else None) == expected, path


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_resolved_targets_equal_the_scan_for_drawn_selections(bases, data):
    name = data.draw(st.sampled_from(sorted(bases)))
    base = bases[name]
    sites = [s for s in base.sites() if s.kind == "linear"]
    chosen = data.draw(st.lists(st.sampled_from(sorted({s.name for s in sites})), min_size=1, max_size=3,
                                unique=True))
    layers = data.draw(st.none() | st.lists(st.integers(0, base.num_layers - 1), min_size=1, max_size=3,
                                            unique=True))
    expected = [s for s in sites if any(s in _scan(t, sites, base) for t in chosen)
                and (layers is None or s.layer in layers)]  # given layers, as PEFT: sites inside them only
    got = resolve_targets(base, "lora", ("linear",), ",".join(chosen), layers)
    assert got == expected


def test_census_rows_name_the_same_sites_as_before_on_a_70b_architecture():
    model = Experiment(Setup("llama-3-70b", "lora"), DATA).model
    census = take_census(model)
    sites = model.base.sites()
    for row in census.rows[:: max(1, len(census.rows) // 60)]:  # every part of the model, not every tensor
        path = row.name.removeprefix("base.").rsplit(".", 1)[0]
        assert row.site == (longest_prefix(path, ((s.id, s.module_path) for s in sites)) or path)


# ---- edits: prepare writes nothing, commit makes it current --------------------------------------------
def test_prepare_builds_without_touching_the_state_and_commit_is_one_undo_step():
    state = StudioState()
    before = (state.setup, state.experiment, state.census)
    snapshot = replace(state.snapshot, setup=replace(state.setup, method="ia3", options={}))
    edit = Edit(lambda: [(snapshot, "")])
    built = state.prepare(edit)
    assert isinstance(built, Built) and built.experiment.setup.method == "ia3"
    assert (state.setup, state.experiment, state.census) == before and not state.can_undo
    events = []
    state.on("changed", lambda: events.append("changed"))
    assert state.commit(edit, built)
    assert state.setup.method == "ia3" and state.census is built.census and events == ["changed"] and state.can_undo


def test_a_failed_prepare_is_reported_at_commit_and_the_old_experiment_stays():
    state = StudioState()
    failures = []
    state.on("failed", lambda title, message: failures.append((title, message)))
    bad = replace(state.snapshot, setup=replace(state.setup, options={"r": -3}))
    result = state.prepare(Edit(lambda: [(bad, "")]))
    assert isinstance(result, BuildFailure) and "r" in result.message
    assert not state.commit(Edit(lambda: [(bad, "")]), result)
    assert failures and state.setup.options == {}


def test_slow_edits_go_to_the_background_executor_and_undo_moves_when_they_land():
    state = StudioState()
    taken: list[Edit] = []
    state.background = lambda edit: taken.append(edit) or True
    assert state.set_base("llama-3-70b")  # a 70B architecture: slow, so handed over
    assert len(taken) == 1 and taken[0].slow and state.setup.base == "tiny"
    result: list = []
    worker = threading.Thread(target=lambda: result.append(state.prepare(taken[0])))  # as the window does
    worker.start()
    worker.join()
    assert state.commit(taken[0], result[0]) and state.setup.base == "llama-3-70b" and state.can_undo
    assert state.set_option("r", 4) and len(taken) == 2  # an edit on a slow base is slow too
    assert state.commit(taken[1], state.prepare(taken[1])) and state.setup.options["r"] == 4
    assert state.undo() and len(taken) == 3 and state.setup.options.get("r") == 4  # not yet: it is building
    assert state.commit(taken[2], state.prepare(taken[2])) and state.setup.options.get("r") is None
    assert state.can_redo
    state.background = None
    assert state.set_base("tiny") and state.setup.base == "tiny"  # a toy base builds at once


def test_a_base_that_cannot_be_built_is_refused_with_its_own_title():
    state = StudioState()
    failures = []
    state.on("failed", lambda title, message: failures.append(title))
    assert not state.set_base("no-such-base")
    assert failures == ["This base cannot be used"] and state.setup.base == "tiny"


# ---- jobs ------------------------------------------------------------------------------------------
def test_a_job_reports_progress_eta_and_stops_once():
    board = JobBoard()
    events = []
    for name in ("added", "changed", "ended"):
        board.on(name, lambda job, name=name: events.append(name))
    stops = []
    job = board.start("Family run", "compare", total=100, stop=lambda: stops.append(1))
    job.started -= 10.0  # ten seconds ago
    job.report(done=25, detail="ia3 (3/12)")
    assert job.fraction == 0.25 and job.eta_s(job.started + 10.0) == pytest.approx(30.0)
    assert "ia3 (3/12)" in job.status_text() and "25/100" in job.status_text() and "left" in job.status_text()
    assert job.request_stop() and job.state == STOPPING and not job.request_stop() and stops == [1]
    assert "stopping" in job.status_text() and job.eta_s() is None
    assert board.running("compare") == [job]
    board.end(job, STOPPED)
    assert board.jobs == [] and job.state == STOPPED and events == ["added", "changed", "changed", "ended"]
    unstoppable = board.start("Building", "window")
    assert not unstoppable.request_stop() and unstoppable.fraction is None
    board.end(unstoppable, FINISHED)
    assert duration_text(45) == "45 s" and duration_text(150) == "2 min" and duration_text(3900) == "1 h 05 min"


# ---- the view a lesson restores ------------------------------------------------------------------------
def test_a_lesson_replaces_the_whole_view_and_clears_notes_it_does_not_have():
    view = ViewState()
    heard: list[set[str]] = []
    view.on_change(heard.append)
    lesson = load_shipped_lesson("word-order")
    hiding = replace(lesson, view=LessonView(presentation_scale=2.0, hidden_panels=("plots",),
                                             hidden_controls=("play",), collapsed_layers=True))
    view.apply_lesson(hiding)
    assert view.presentation and view.hidden_panels == {"plots"} and view.notes == lesson.notes
    plain = replace(lesson, notes=())
    changed = view.apply_lesson(plain)
    assert view.hidden_panels == frozenset() and view.hidden_controls == frozenset() and not view.presentation
    assert view.notes == () and {"notes", "hidden_panels", "presentation"} <= changed
    assert view.set(presentation=False) == set() and heard[-1] == changed  # nothing changed: nobody is told
    saved = view.lesson_view()
    assert saved.collapsed_layers == plain.view.collapsed_layers and saved.hidden_panels == ()
    with pytest.raises(TypeError):
        view.set(no_such_field=1)


def test_large_bases_open_collapsed_and_expand_a_few_layers_at_a_time():
    view = ViewState()
    assert not layers_collapsed(view.view, 2) and layers_collapsed(view.view, 80)
    view.set(collapsed=False)
    assert shown_range(view.view, 80) == (0, 3) and shown_range(view.view, 6) is None
    view.set(shown_layers=(40, 43))
    assert shown_range(view.view, 80) == (40, 43)
    assert parse_layer_range("7", 80) == (7, 7) and parse_layer_range("12–9", 80) == (9, 12)
    for bad in ("", "x", "1-2-3", "80"):
        with pytest.raises(ValueError):
            parse_layer_range(bad, 80)


# ---- the comparison board ------------------------------------------------------------------------------
def _record(method: str, steps: int, run_id: str):
    from peft_studio.core.runs.run_store import Curves, RunRecord

    return RunRecord(run_id=run_id, created="", base="tiny", method=method, options={}, dataset="intents", seed=0,
                     settings={"steps": steps}, where="", steps_done=steps, final_train_loss=0.1,
                     final_train_accuracy=1.0, final_val_loss=None, final_val_accuracy=None, steps_to_95=None,
                     steps_per_second=100.0, trainable_params=1, base_params=10, head_params=1, adapter_bytes=4,
                     memory=None, memory_estimate=None, latency_ms=1.0, base_latency_ms=1.0,
                     merged_latency_ms=None, latency_batch=1, curves=Curves())


def test_the_board_compares_one_budget_at_a_time_and_a_new_run_brings_its_own():
    comparison = Comparison()
    comparison.set_runs([_record("lora", 300, "a"), _record("ia3", 300, "b"), _record("lora", 60, "c")])
    assert comparison.budgets() == [60, 300] and [r.run_id for r in comparison.shown()] == ["c"]
    comparison.show_budget(300)
    assert [r.run_id for r in comparison.shown()] == ["a", "b"]
    comparison.tick("b", False)
    assert [r.run_id for r in comparison.selected()] == ["a"]
    comparison.add(_record("adapter", 60, "d"))
    assert comparison.current_budget() == 60 and [r.run_id for r in comparison.selected()] == ["c", "d"]
    comparison.remove("c")
    comparison.remove("d")
    assert comparison.current_budget() == 300


# ---- no "best" for timing noise --------------------------------------------------------------------------
def _column(key: str):
    return next(c for c in COLUMNS if c.key == key)


def test_timed_columns_mark_a_best_only_beyond_the_noise():
    latency = _column("added_latency_ms")
    runs = [replace(_record(m, 60, m), latency_ms=1.0 + added, base_latency_ms=1.0)
            for m, added in (("lora", -0.048), ("ia3", 0.03), ("adapter", 0.9))]
    assert best_rows(runs, latency) == set()  # -0.048 against +0.03: the timer, not the method
    assert latency.text(-0.048) == "≈0"
    clear = [replace(r, latency_ms=1.0 + a) for r, a in zip(runs, (0.0, 1.2, 2.5), strict=True)]
    assert best_rows(clear, latency) == {0}
    assert best_rows(clear[:1], latency) == set()  # alone it beats nobody
    counted = _column("trainable_params")
    assert best_rows([replace(clear[0], trainable_params=5), replace(clear[1], trainable_params=6)], counted) == {0}


def test_an_unknown_target_is_still_refused_by_name(bases):
    with pytest.raises(ConfigError, match="unknown site 'nope'"):
        get_method("lora").validate(get_method("lora").config({"targets": "nope"}), bases["tiny"])


def test_reset_on_a_slow_base_is_a_rebuild_without_an_undo_step():
    state = StudioState(Setup("tiny-decoder", "lora"), DATA)
    weights = {n: p.clone() for n, p in state.experiment.model.named_parameters() if p.requires_grad}
    for p in state.experiment.model.parameters():
        if p.requires_grad:
            p.data.add_(1.0)  # "trained"
    state.reset_model()  # a toy base: in place
    assert all((p == weights[n]).all() for n, p in state.experiment.model.named_parameters() if p.requires_grad)
    slow = StudioState(Setup("gpt2", "lora"), DATA)
    taken: list[Edit] = []
    slow.background = lambda edit: taken.append(edit) or True
    slow.reset_model()
    assert len(taken) == 1 and taken[0].slow and not taken[0].record
    assert slow.commit(taken[0], slow.prepare(taken[0])) and not slow.can_undo
