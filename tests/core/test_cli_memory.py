"""`peft-studio inspect --memory` and its flags: the ledger memory_scale computes, as text and in --json."""

from __future__ import annotations

import json

import pytest

from peft_studio.cli import main
from peft_studio.core.data import load_builtin
from peft_studio.core.memory.at_scale import ledger, plan_for
from peft_studio.core.model.experiment import Experiment, Setup


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _core(base: str, method: str, options: dict, **choices):
    experiment = Experiment(Setup(base, method, options), load_builtin("intents"))
    plan = plan_for(experiment.shape_change(), **choices)
    return plan, ledger(experiment.census(), experiment.base, plan)


def test_memory_json_equals_the_core_ledger_with_prompt_tokens(capsys):
    code, out, err = run(capsys, "inspect", "--base", "tiny-decoder", "--method", "prompt-tuning", "--json",
                         "--weights", "fp16", "--optimizer", "sgd", "--batch", "3", "--seq-len", "40",
                         "--device-gb", "8")
    assert code == 0, err
    memory = json.loads(out)["memory"]
    plan, book = _core("tiny-decoder", "prompt-tuning", {}, weights="fp16", optimizer="sgd", batch=3, seq_len=40)
    assert plan.extra_tokens > 0 and memory["plan"]["prompt_tokens"] == plan.extra_tokens
    assert [line["bytes"] for line in memory["lines"]] == [size for _, size in book.lines]
    assert memory["total_bytes"] == book.total and memory["fits"] is True and memory["fit_line"] == book.fit_line()
    assert all(line["formula"] for line in memory["lines"])


def test_memory_text_for_llama_3_70b_qlora_says_what_core_computes(capsys):
    code, out, err = run(capsys, "inspect", "--base", "llama-3-70b", "--method", "qlora", "--targets", "all-linear",
                         "--r", "16", "--memory", "--weights", "nf4-dq", "--checkpointing", "--device-gb", "24")
    assert code == 0, err
    _, book = _core("llama-3-70b", "qlora", {"targets": "all-linear", "r": 16}, weights="nf4-dq", checkpointing=True)
    assert book.verdict(24) in out and book.fit_line() in out
    assert "does not fit in 24 GB" in out and "80 GB yes" in out  # ~42 GiB: 4-bit 70B weights alone are ~37 GiB
    assert f"{book.total:,} B" in out


@pytest.mark.parametrize("base", ["tiny-decoder", "llama-3-8b"])
def test_qloras_frozen_base_is_counted_one_way_in_inspect_compare_and_the_dock(capsys, base):
    """The base as QLoRA builds it (NF4 Linears, the rest in 16 bits) unless --weights says otherwise."""
    from peft_studio.core.memory.at_scale import MemoryPlan, frozen_storage
    from peft_studio.core.runs.placement_compare import compare_placements

    code, out, err = run(capsys, "inspect", "--base", base, "--method", "qlora", "--json", "--memory",
                         "--seq-len", "512")
    assert code == 0, err
    memory = json.loads(out)["memory"]
    experiment = Experiment(Setup(base, "qlora", {}), load_builtin("intents"))
    census = experiment.census()
    as_built = frozen_storage(census, "bf16")  # what the Memory dock's "as built" shows
    assert as_built == memory["plan"]["weights"] == "nf4" and "(nf4)" in memory["lines"][0]["what"]
    _, book = _core(base, "qlora", {}, weights=as_built, seq_len=512)
    assert memory["total_bytes"] == book.total
    row, = compare_placements(base, load_builtin("intents"), ["qlora"], MemoryPlan(seq_len=512))
    assert row.weights == "nf4" and row.memory_bytes == book.total  # compare's column
    code, out, _ = run(capsys, "inspect", "--base", base, "--method", "qlora", "--json", "--weights", "bf16")
    assert json.loads(out)["memory"]["plan"]["weights"] == "bf16"  # said otherwise


def test_without_memory_flags_inspect_json_has_no_memory_key(capsys):
    code, out, _ = run(capsys, "inspect", "--base", "tiny-decoder", "--json")
    assert code == 0 and "memory" not in json.loads(out)


@pytest.mark.parametrize("argv", [
    ("--batch", "0"), ("--seq-len", "-3"), ("--weights", "int3"), ("--optimizer", "lion"), ("--device-gb", "12"),
    ("--batch", "1000000", "--seq-len", "1000"),
])
def test_bad_memory_values_are_one_error_line_and_exit_2(capsys, argv):
    code, out, err = run(capsys, "inspect", "--base", "tiny-decoder", "--memory", *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
