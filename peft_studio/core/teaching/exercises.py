"""The seed's four exercises as data, and the evidence the app computes for them (Qt-free).

Each exercise has the seed's question word for word, what "set up" prepares (a shipped lesson or
example, or the methods to step through) and what the app shows as evidence. Exercise 2's evidence
is `task_bytes` (20 adapters on one base against 20 full copies); exercise 3's is
`bottleneck_sweep` (trainable parameters, and accuracy after a short training, per bottleneck m,
with the seed's count formula beside it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from ..data import load_builtin
from ..errors import ConfigError
from ..model.census import take_census
from ..model.experiment import Experiment
from ..runs.train import TrainControl, evaluate, train
from .examples import SEED_EXAMPLE, load_example


@dataclass(frozen=True)
class Exercise:
    number: int
    title: str
    question: str  # the seed's words
    setup: str  # what the "set up" button prepares, in words
    lesson: str | None  # the shipped lesson ("lessons/NAME.json") or example ("setups/NAME.json") it opens
    methods: tuple[str, ...] = ()  # methods to step through (exercise 1)
    evidence: str = ""


EXERCISES: tuple[Exercise, ...] = (
    Exercise(1, "Where each method modifies the model",
             "Explain in your own words which part of the model Prompt Tuning, Prefix Tuning, Adapter, and IA3 "
             "each modify.",
             "Steps through the four methods on the tiny encoder; the diagram highlights the trainable part.",
             "prompt-tuning", ("prompt-tuning", "prefix-tuning", "adapter", "ia3"),
             "The orange parts of the diagram and the card's \"where\" line for each method."),
    Exercise(2, "One base, twenty tasks",
             "If you want to adapt one base model to 20 different business tasks at the same time, why is Adapter "
             "often attractive?",
             "Opens the seed example; train two or three small task adapters on one base with the adapter switcher.",
             SEED_EXAMPLE, ("adapter",),
             "The bytes of 20 adapters on one shared base against 20 full copies of the model."),
    Exercise(3, "Bottleneck size",
             "Change bottleneck_dim in the Adapter code in this section to a larger or smaller value, and observe "
             "how the number of trainable parameters changes.",
             "Opens the seed example and counts the bottleneck sweep over 1, 2, 4, 8, 16 and 32; Train the sweep "
             "trains each size on the sentiment task (the seed's six sentences are learnt by every size).",
             SEED_EXAMPLE, ("adapter",),
             "Trainable parameters (and accuracy after a short training) against the bottleneck, with the formula."),
    Exercise(4, "Limited hardware, complex task",
             "Think about it: if your hardware is very limited but the task is fairly complex, which PEFT method "
             "would you try first? Why?",
             "Opens the word-order lesson (the same words in a different order mean the other label) and the "
             "comparison board, ready: press Run the family there (about a minute).",
             "word-order", ("prompt-tuning", "prefix-tuning", "adapter", "ia3", "lora", "qlora"),
             "Memory and accuracy of each method side by side on the word-order task."),
)

BOTTLENECKS = (1, 2, 4, 8, 16, 32)
# The trained sweep's task. Every bottleneck learns the seed's six sentences perfectly (a flat line at 1.00
# says nothing); on `sentiment` the seed's base reaches 0.64 with m = 1 and 0.77 with m = 16-32 after 100
# steps (seed 42), so the plot shows that size buys accuracy, and where it stops paying.
SWEEP_DATASET = "sentiment"
SEED_FORMULA = "trainable = (d x m + m) + (m x d + d) + (d x k + k)   [adapter_down, adapter_up, classifier]"


def exercise(number: int) -> Exercise:
    for item in EXERCISES:
        if item.number == number:
            return item
    raise ConfigError(f"no exercise {number} (the seed has {len(EXERCISES)})")


# ---- exercise 3: the bottleneck sweep ------------------------------------------------------------
def seed_formula_count(bottleneck: int, hidden: int = 16, labels: int = 2) -> int:
    """The seed's count: Linear(d, m) + Linear(m, d) + the Linear(d, k) classifier, weights and biases."""
    d, m, k = hidden, bottleneck, labels
    return (d * m + m) + (m * d + d) + (d * k + k)


def seed_formula_text(bottleneck: int, hidden: int = 16, labels: int = 2) -> str:
    d, m, k = hidden, bottleneck, labels
    return (f"({d} x {m} + {m}) + ({m} x {d} + {d}) + ({d} x {k} + {k}) = "
            f"{seed_formula_count(bottleneck, hidden, labels):,}")


@dataclass(frozen=True)
class SweepPoint:
    bottleneck: int
    trainable: int  # counted on the built model (the census)
    formula: int  # the seed's closed form for the same d, m, k
    formula_text: str
    accuracy: float | None  # after `steps` of training (validation, or train where there is none); None untrained


def bottleneck_sweep(bottlenecks: Sequence[int] = BOTTLENECKS, steps: int = 0,
                     example: str = SEED_EXAMPLE, dataset: str | None = None,
                     control: TrainControl | None = None) -> Iterator[SweepPoint]:
    """One point per bottleneck on the example's setup (the seed's by default); a generator, so a
    window can show each point as it comes. `steps` > 0 also trains each for that many steps, on the
    built-in `dataset` when given (else the example's); `control` stops inside a point's training."""
    setup, task, settings = load_example(example)
    if dataset is not None:
        task = load_builtin(dataset)
    if setup.method != "adapter":
        raise ConfigError(f"the bottleneck sweep needs an adapter setup; {example!r} uses {setup.method!r}")
    for m in bottlenecks:
        experiment = Experiment(replace(setup, options={**setup.options, "bottleneck": int(m)}), task)
        trainable = take_census(experiment.model).trainable
        d, k = experiment.base.hidden_size, task.num_labels
        accuracy = None
        if steps > 0:
            for _ in train(experiment, replace(settings, steps=steps, track_grads=False, eval_every=steps), control):
                pass
            if control is not None and control.stopped:
                return
            if experiment.val_ids is not None:
                _, accuracy = evaluate(experiment, experiment.val_ids, experiment.val_mask, experiment.val_labels)
            else:
                _, accuracy = evaluate(experiment, experiment.train_ids, experiment.train_mask,
                                       experiment.train_labels)
        yield SweepPoint(int(m), trainable, seed_formula_count(m, d, k), seed_formula_text(m, d, k), accuracy)


# ---- exercise 2: twenty tasks ---------------------------------------------------------------------
@dataclass(frozen=True)
class TaskBytes:
    tasks: int
    base_bytes: int  # the frozen model, stored once
    adapter_bytes: int  # one task's own tensors (method parts + head)
    full_copy_bytes: int  # one fine-tuned copy of the whole model with its head

    @property
    def with_adapters(self) -> int:
        return self.base_bytes + self.tasks * self.adapter_bytes

    @property
    def with_copies(self) -> int:
        return self.tasks * self.full_copy_bytes

    @property
    def ratio(self) -> float:
        return self.with_copies / self.with_adapters

    def summary(self) -> str:
        return (f"{self.tasks} adapters on one base: {self.with_adapters:,} bytes; {self.tasks} full copies: "
                f"{self.with_copies:,} bytes ({self.ratio:.1f}x more)")


def task_bytes(experiment: Experiment, tasks: int = 20) -> TaskBytes:
    """From an experiment's census: its frozen base once plus `tasks` x its trainable tensors, against
    `tasks` full copies (every tensor of the model, which full fine-tuning would store per task)."""
    if tasks < 1:
        raise ConfigError(f"tasks must be at least 1 (got {tasks})")
    rows = take_census(experiment.model).rows
    base = sum(r.bytes for r in rows if r.owner == "base")
    own = sum(r.bytes for r in rows if r.trainable)
    head = sum(r.bytes for r in rows if r.owner == "head")
    return TaskBytes(tasks, base, own, base + head)


# ---- exercise 4: memory and accuracy side by side ------------------------------------------------
@dataclass(frozen=True)
class MethodRow:
    method: str
    trainable: int
    base_bytes: int  # frozen tensors as stored (NF4 codes for QLoRA)
    training_bytes: int  # trainable weights + their gradients + Adam's two moments (4 x fp32 each)
    accuracy: float | None  # validation accuracy after `steps` (None untrained)


def method_comparison(lesson: str = "word-order", methods: Sequence[str] | None = None,
                      steps: int = 0, control: TrainControl | None = None) -> Iterator[MethodRow]:
    """Each method on a shipped lesson's base and task: what training it holds in memory, and how well
    it does after `steps` (the lesson's own training settings otherwise). A generator, row by row."""
    from .lesson import load_shipped_lesson

    start = load_shipped_lesson(lesson)
    for name in methods if methods is not None else exercise(4).methods:
        experiment = Experiment(replace(start.setup, method=name, options={}), start.dataset)
        rows = take_census(experiment.model).rows
        trainable = [r for r in rows if r.trainable]
        accuracy = None
        if steps > 0:
            for _ in train(experiment, replace(start.settings, steps=steps, track_grads=False, eval_every=steps),
                           control):
                pass
            if control is not None and control.stopped:
                return
            ids, mask, labels = ((experiment.val_ids, experiment.val_mask, experiment.val_labels)
                                 if experiment.val_ids is not None else
                                 (experiment.train_ids, experiment.train_mask, experiment.train_labels))
            _, accuracy = evaluate(experiment, ids, mask, labels)
        yield MethodRow(name, sum(r.numel for r in trainable), sum(r.bytes for r in rows if not r.trainable),
                        4 * sum(r.bytes for r in trainable), accuracy)
