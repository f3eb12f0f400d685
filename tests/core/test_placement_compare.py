"""The family on an architecture without weights: each row is the method's own experiment counted on the
meta device, and its memory is memory_scale's ledger of that census; no training happens."""

from __future__ import annotations

from dataclasses import replace

import pytest

from peft_studio.cli import main
from peft_studio.core.data import load_builtin
from peft_studio.core.errors import PeftStudioError
from peft_studio.core.memory.at_scale import MemoryPlan, ledger
from peft_studio.core.methods import METHODS
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.placement_compare import compare_placements, placement_table


def test_each_row_equals_that_methods_own_experiment_on_the_meta_device():
    dataset, plan = load_builtin("intents"), MemoryPlan(batch=2, seq_len=256)
    rows = list(compare_placements("gpt2", dataset, plan=plan))
    assert [r.method for r in rows] == list(METHODS)
    for row in rows:
        if row.skipped:  # the same refusal, word for word, as building that method's experiment
            with pytest.raises(PeftStudioError) as refused:
                Experiment(Setup("gpt2", row.method, {}, 0), dataset)
            assert str(refused.value) == row.skipped
            continue
        experiment = Experiment(Setup("gpt2", row.method, {}, 0), dataset)
        census = experiment.census()
        assert row.trainable == census.trainable and row.adapter_bytes == 4 * census.trainable
        assert row.sites == len(experiment.selected_sites())
        change = experiment.method.shape_change(experiment.config)
        expected = ledger(census, experiment.base, replace(plan, weights=row.weights, extra_tokens=change.input_tokens,
                                                           extra_keys=change.key_tokens))
        assert row.memory_bytes == expected.total
    assert any(r.skipped for r in rows)  # QLoRA cannot quantize GPT-2's Conv1D: the reason is kept
    by = {r.method: r for r in rows if not r.skipped}
    assert by["full"].memory_bytes > by["lora"].memory_bytes  # what PEFT saves: gradients and optimizer state


def test_qlora_is_placed_with_nf4_weights_and_needs_the_least_memory():
    rows = {r.method: r for r in compare_placements("qwen2.5-0.5b", load_builtin("intents"), ["lora", "qlora"])}
    assert rows["qlora"].weights == "nf4" and rows["lora"].weights == "bf16"
    assert rows["qlora"].trainable == rows["lora"].trainable and rows["qlora"].memory_bytes < rows["lora"].memory_bytes
    table = placement_table(list(rows.values()), MemoryPlan())
    assert " nf4 " in table.splitlines()[2] and table.splitlines()[2].split()[-3].endswith("*")


def test_cli_compares_an_architecture_without_training(capsys, tmp_path):
    out = tmp_path / "placed.csv"
    assert main(["compare", "--base", "llama-3-8b", "--methods", "lora,ia3,full", "--csv", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "memory to train" in printed and "No training on a meta-device base" in " ".join(printed.split())
    assert max(map(len, printed.splitlines())) <= 100
    lines = out.read_text().splitlines()
    assert lines[0].startswith("method,title,sites,trainable") and [line.split(",")[0] for line in lines[1:]] == \
        ["lora", "ia3", "full"]
    assert main(["compare", "--base", "llama-3-8b", "--methods", "lora,nope"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown method 'nope'")
