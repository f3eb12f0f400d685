"""Run the family, record the runs, store them, tabulate them: core and `peft-studio compare`."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from method_table import fitting_options, method_names

from peft_studio.cli import main
from peft_studio.core.bases import create_base
from peft_studio.core.data import load_builtin
from peft_studio.core.errors import RunStoreError
from peft_studio.core.lenses.run_summary import OLD_RUN_NOTE
from peft_studio.core.methods import METHODS
from peft_studio.core.runs.compare import (
    COLUMNS,
    DETERMINISTIC,
    LENS_KEYS,
    family_records,
    format_table,
    lens_missing,
    run_family,
    table_cells,
    twenty_tasks,
    write_csv,
)
from peft_studio.core.runs.run_store import RunStore, default_runs_dir
from peft_studio.core.runs.train import TrainControl, TrainSettings

SETTINGS = TrainSettings(steps=5, lr=0.01, batch_size=64, eval_every=2)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models on a shared machine: one thread avoids OpenMP spin-waiting (DESIGN.md, known traps)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("runs"))
    events = list(run_family("tiny", load_builtin("word-order"), SETTINGS, seed=3, store=store))
    return store, events, [e.record for e in events if e.record is not None]


def _finite(value) -> bool:
    return value is None or isinstance(value, str) or math.isfinite(value)


def test_family_on_tiny_fills_one_row_per_method_with_finite_numbers(family):
    _, events, records = family
    fits = method_names(lambda m: fitting_options(m.name, create_base("tiny", load_builtin("word-order")
                                                                      .make_tokenizer())) is not None)
    assert [r.method for r in records] == fits  # every method some setting of which fits tiny
    assert {e.method for e in events if e.kind == "skip"} == set(METHODS) - set(fits)  # a decoder's, with why
    assert [e.kind for e in events].count("step") == 5 * len(fits)
    for r in records:
        assert r.steps_done == 5 and len(r.curves) == 5 and r.curves.validation()[0]  # validation every 2 steps
        numbers = [r.trainable_params, r.trainable_percent, r.adapter_bytes, r.training_memory,
                   r.final_train_accuracy, r.final_val_accuracy, r.steps_per_second, r.added_latency_ms]
        assert all(v is not None and math.isfinite(v) for v in numbers), r.method
        assert r.steps_per_second > 0 and r.adapter_bytes > 4 * r.trainable_params  # fp32 + header/metadata
        assert all(_finite(c.value(r)) for c in COLUMNS)
        assert r.memory.batch_size == 64 and r.memory_estimate.batch_size == 64
    by = {r.method: r for r in records}
    assert by["lora"].added_latency_merged_ms is not None  # LoRA merges; QLoRA's 4-bit W0 cannot
    assert by["qlora"].added_latency_merged_ms is None and by["adapter"].added_latency_merged_ms is None
    full = by["full"]  # % of the base: the head comes on top
    assert full.trainable_percent == pytest.approx(100 * (full.base_params + full.head_params) / full.base_params)
    assert by["head-only"].training_memory < by["prompt-tuning"].training_memory


def test_table_marks_the_best_and_prints_the_twenty_task_footer(family):
    _, _, records = family
    text = format_table(records, current="lora")
    head_only_line = next(line for line in text.splitlines() if line.startswith("head-only"))
    assert head_only_line.count("*") >= 3  # fewest params, smallest adapter, least memory
    lora = next(r for r in records if r.method == "lora")
    tasks = twenty_tasks(lora)
    assert tasks.with_adapters == 20 * lora.adapter_bytes + 4 * lora.base_params
    assert tasks.with_full_copies == 20 * 4 * (lora.base_params + lora.head_params)
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("20 tasks"))
    assert " ".join(line.strip() for line in lines[start:]) == tasks.text()  # wrapped to 100 columns
    assert format_table(records, current="lora", wide=True).splitlines()[-1] == tasks.text()


def test_the_default_table_fits_100_columns_and_wide_has_every_column(family):
    _, _, records = family
    narrow, wide = format_table(records, current="lora"), format_table(records, current="lora", wide=True)
    assert max(map(len, narrow.splitlines())) <= 100 < max(map(len, wide.splitlines()))
    assert [c.header for c in COLUMNS if c.header not in narrow.splitlines()[0]] == \
        ["where the trainable part sits", "training memory", "activations", "+latency ms", "+latency merged ms",
         "ΔW eff. rank", "‖ΔW‖/‖W0‖", "forgetting"]
    assert all(c.header in wide.splitlines()[0] for c in COLUMNS)
    assert [line.split()[0] for line in narrow.splitlines()[1:len(records) + 1]] == [r.method for r in records]


def test_every_run_records_its_lens_and_says_why_a_delta_w_is_missing(family):
    _, _, records = family
    for r in records:
        assert r.forgetting is not None and r.forgetting >= -1e-6 and r.forgetting_measure, r.method
        has_delta = r.lens_effective_rank is not None
        assert has_delta == (r.lens_relative_norm is not None) == (r.lens_note == ""), r.method
        assert has_delta or (lens_missing(r, "effective_rank") == r.lens_note and "no ΔW" in r.lens_note)
    by = {r.method: r for r in records}
    assert by["lora"].lens_effective_rank > 0 and by["full"].lens_relative_norm > 0
    assert by["prompt-tuning"].lens_effective_rank is None and by["head-only"].lens_effective_rank is None


def test_a_run_saved_before_the_lens_loads_with_dashes(family, tmp_path):
    _, _, records = family
    data = records[0].to_json()
    for key in ("lens_effective_rank", "lens_relative_norm", "forgetting", "forgetting_measure", "lens_note"):
        data.pop(key)
    (tmp_path / f"{records[0].run_id}.json").write_text(json.dumps(data))
    old = RunStore(tmp_path).load(records[0].run_id)
    assert (old.lens_effective_rank, old.lens_relative_norm, old.forgetting) == (None, None, None)
    assert all(lens_missing(old, key) == OLD_RUN_NOTE for key in LENS_KEYS)
    assert [c.text(c.value(old)) for c in COLUMNS if c.key in LENS_KEYS] == ["—"] * 3


def test_run_store_round_trip_survives_a_restart_and_deletes(family):
    store, _, records = family
    reopened = RunStore(store.folder)  # a new process would do the same
    loaded = reopened.list()
    assert [r.run_id for r in loaded] == [r.run_id for r in records]
    for original, back in zip(records, loaded, strict=True):
        assert back.to_json() == json.loads(json.dumps(original.to_json()))
        assert back.curves == original.curves
        assert back.memory == original.memory and back.memory_estimate == original.memory_estimate
    assert not list(store.folder.glob("*.tmp"))  # atomic writes leave no temp files
    (store.folder / "broken.json").write_text("{not json")
    assert len(reopened.list()) == len(records) and "broken.json" in reopened.skipped[0]
    victim = loaded[0].run_id
    reopened.delete(victim)
    assert victim not in [r.run_id for r in RunStore(store.folder).list()]
    assert not list(store.folder.glob(f"{victim}*"))
    with pytest.raises(RunStoreError, match="no such run"):
        reopened.delete(victim)
    with pytest.raises(RunStoreError, match="not a run id"):
        reopened.load("../etc/passwd")


def test_default_runs_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_runs_dir() == tmp_path / "peft-studio" / "runs"


def test_csv_export_parses(family, tmp_path):
    _, _, records = family
    path = write_csv(records, tmp_path / "board.csv")
    rows = list(csv.DictReader(path.open()))
    assert [r["method"] for r in rows] == [r.method for r in records]
    assert int(rows[0]["adapter_bytes"]) == records[0].adapter_bytes
    assert float(rows[0]["train_accuracy"]) == records[0].final_train_accuracy


def test_family_skips_what_the_base_cannot_build_and_stops_between_steps():
    data = load_builtin("seed-intents")
    events = list(run_family("seed-pooled", data, TrainSettings(steps=2), methods=["prefix-tuning", "head-only"]))
    assert events[0].kind == "skip" and "attention" in events[0].reason
    assert [e.method for e in events if e.kind == "done"] == ["head-only"]
    control = TrainControl()
    kinds = []
    for event in run_family("seed-pooled", data, TrainSettings(steps=50), control=control):
        kinds.append(event.kind)
        if event.kind == "step" and event.step.step == 2:
            control.stop()
    assert kinds[-1] == "stopped" and "done" not in kinds and kinds.count("step") == 3


def test_the_next_token_family_skips_head_only_and_times_against_the_bare_base():
    events = list(run_family("tiny-decoder", load_builtin("texts"), TrainSettings(steps=2),
                             methods=["head-only", "lora"]))
    assert events[0].kind == "skip" and "nothing would train" in events[0].reason
    done = [e.record for e in events if e.kind == "done"]
    assert [r.method for r in done] == ["lora"] and math.isfinite(done[0].latency_ms)


def test_cli_compare_prints_the_core_table_for_the_same_seed(capsys, tmp_path):
    methods = ["lora", "ia3", "head-only"]
    settings = TrainSettings(steps=4, lr=0.02, seed=1)
    records = family_records(run_family("tiny", load_builtin("sentiment"), settings, seed=1, methods=methods))
    code = main(["compare", "--base", "tiny", "--dataset", "sentiment", "--steps", "4", "--lr", "0.02",
                 "--seed", "1", "--methods", ",".join(methods), "--runs-dir", str(tmp_path / "runs"),
                 "--csv", str(tmp_path / "t.csv"), "--wide", "--threads", "1"])  # the core run above's count
    out, err = capsys.readouterr()
    assert code == 0 and "lora: 4 steps" in err and "every run trains with 1 torch thread (given)" in err
    lines = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in methods}
    keep = [j for j, c in enumerate(COLUMNS) if c.key in DETERMINISTIC]
    for record, cells in zip(records, table_cells(records), strict=True):
        printed = lines[record.method]
        for j in keep:
            assert cells[j] in printed, f"{record.method} {COLUMNS[j].key}: {cells[j]!r} not in {printed!r}"
    saved = RunStore(tmp_path / "runs").list()
    assert [r.method for r in saved] == methods
    assert [r.adapter_bytes for r in saved] == [r.adapter_bytes for r in records]
    assert [r.final_val_accuracy for r in saved] == [r.final_val_accuracy for r in records]


def test_cli_compare_user_errors(capsys, tmp_path):
    assert main(["compare", "--methods", "lora,nope", "--runs-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: unknown method 'nope'")
    (tmp_path / "file").write_text("x")
    assert main(["compare", "--methods", "lora", "--steps", "1", "--runs-dir", str(tmp_path / "file")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["compare", "--steps", "0", "--runs-dir", str(tmp_path)]) == 2
    assert "--steps: 0 is out of range [1," in capsys.readouterr().err
    assert main(["compare", "--threads", "0", "--runs-dir", str(tmp_path)]) == 2
    assert "--threads: 0 is out of range [1, 1024]" in capsys.readouterr().err
    assert main(["compare", "--threads", "many", "--runs-dir", str(tmp_path)]) == 2
    assert "--threads: 'many' is not a whole number" in capsys.readouterr().err


def test_a_family_measures_its_thread_count_once_and_gives_the_caller_its_own_back():
    from peft_studio.core.runs.threads import ThreadChoice

    choice = ThreadChoice(2, probe_s=0.01, max_probe_s=0.05)
    events = list(run_family("tiny", load_builtin("word-order"), SETTINGS, methods=["lora", "ia3"], threads=choice))
    counts = {e.threads for e in events if e.kind == "start"}
    assert choice.probes == 1 and counts == {choice.threads}  # measured once, one count for every run
    assert torch.get_num_threads() == 1  # the module's fixture count, restored
    events = list(run_family("tiny", load_builtin("word-order"), SETTINGS, methods=["lora"], threads=2))
    assert [e.threads for e in events if e.kind == "start"] == [2] and torch.get_num_threads() == 1
