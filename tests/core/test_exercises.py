"""The seed's exercises: the questions are the seed's words, the sweep's counts equal the seed's formula."""

from __future__ import annotations

import pytest

from peft_studio.core.errors import ConfigError
from peft_studio.core.methods import METHODS
from peft_studio.core.model.experiment import Experiment
from peft_studio.core.teaching.examples import example_names, load_example
from peft_studio.core.teaching.exercises import (
    BOTTLENECKS,
    EXERCISES,
    bottleneck_sweep,
    exercise,
    method_comparison,
    seed_formula_count,
    seed_formula_text,
    task_bytes,
)
from peft_studio.core.teaching.lesson import lesson_names


def test_the_four_questions_are_the_seeds_words_and_point_at_shipped_files():
    from pathlib import Path

    seed = Path("/work/shared/seed/000_a5dadcf3bd3ec547.txt")
    assert [e.number for e in EXERCISES] == [1, 2, 3, 4]
    for item in EXERCISES:
        if seed.is_file():
            assert item.question in seed.read_text(encoding="utf-8")
        assert item.lesson in set(lesson_names()) | set(example_names())
        assert set(item.methods) <= set(METHODS)
    assert exercise(3).title == "Bottleneck size"
    with pytest.raises(ConfigError, match="no exercise 5"):
        exercise(5)


def test_the_seeds_printed_count_is_the_formula():
    assert seed_formula_count(4) == 182  # the seed prints "trainable params = 182"
    assert seed_formula_text(4) == "(16 x 4 + 4) + (4 x 16 + 16) + (16 x 2 + 2) = 182"


def test_the_sweep_counts_equal_the_formula_and_training_gives_accuracy():
    points = list(bottleneck_sweep(BOTTLENECKS))
    assert [p.bottleneck for p in points] == list(BOTTLENECKS)
    assert [p.trainable for p in points] == [p.formula for p in points] == [seed_formula_count(m) for m in BOTTLENECKS]
    assert all(p.accuracy is None for p in points)
    trained = list(bottleneck_sweep((1, 8), steps=30))
    assert all(0.0 <= p.accuracy <= 1.0 for p in trained) and trained[1].accuracy == 1.0


def test_twenty_adapters_against_twenty_copies():
    setup, dataset, _ = load_example("seed-example")
    numbers = task_bytes(Experiment(setup, dataset), tasks=20)
    assert numbers.adapter_bytes == 182 * 4 and numbers.base_bytes == (694 - 182) * 4  # fp32, the seed's counts
    assert numbers.with_adapters == numbers.base_bytes + 20 * 182 * 4
    assert numbers.with_copies == 20 * (numbers.base_bytes + 34 * 4)
    assert "20 adapters on one base" in numbers.summary()
    with pytest.raises(ConfigError):
        task_bytes(Experiment(setup, dataset), tasks=0)


def test_the_hardware_comparison_counts_memory_and_trains_on_word_order():
    rows = {r.method: r for r in method_comparison(methods=("prompt-tuning", "lora", "qlora"))}
    assert all(r.accuracy is None for r in rows.values())
    assert rows["lora"].trainable > rows["prompt-tuning"].trainable
    assert rows["qlora"].base_bytes < rows["lora"].base_bytes  # 4-bit storage of the frozen Linears
    assert rows["lora"].training_bytes == 4 * 4 * rows["lora"].trainable  # fp32 weight, grad, two Adam moments
    trained = next(method_comparison(methods=("lora",), steps=5))
    assert 0.0 <= trained.accuracy <= 1.0
