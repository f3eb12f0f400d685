"""Final accuracy of every method on every built-in task, seeded: the README's table.

    python benchmarks/accuracy_table.py            # prints a Markdown table (a few minutes on 2 cores)

Each cell is validation accuracy (train accuracy where the task has no validation split, as the
seed's six sentences), after a fixed number of full-batch or mini-batch Adam steps.
"""

from __future__ import annotations

import sys

from peft_studio.core.data import builtin_names, load_builtin
from peft_studio.core.errors import ConfigError
from peft_studio.core.methods import method_names
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.train import TrainSettings, train

RECIPES = {  # dataset -> (steps, lr, batch size, seed)
    "seed-intents": (201, 0.05, 0, 42),
    "intents": (300, 1e-2, 64, 0),
    "word-order": (300, 1e-2, 64, 0),
    "sentiment": (300, 1e-2, 64, 0),
}


def final_accuracy(base: str, method: str, dataset_name: str) -> str:
    steps, lr, batch_size, seed = RECIPES.get(dataset_name, (300, 1e-2, 64, 0))
    try:
        experiment = Experiment(Setup(base, method, {}, seed=seed), load_builtin(dataset_name))
    except ConfigError:
        return "n/a"
    last = list(train(experiment, TrainSettings(steps=steps, lr=lr, batch_size=batch_size, seed=seed,
                                                eval_every=steps, track_grads=False)))[-1]
    accuracy = last.val_accuracy if last.val_accuracy is not None else last.accuracy
    return f"{accuracy:.2f}"


def main(bases: list[str]) -> None:
    datasets = [name for name in builtin_names() if load_builtin(name).task == "classify"]  # not next-token
    print("| base | method | " + " | ".join(datasets) + " |")
    print("|---|---|" + "---|" * len(datasets))
    for base in bases:
        for method in method_names():
            cells = [final_accuracy(base, method, name) for name in datasets]
            print(f"| {base} | {method} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["seed-pooled", "tiny"])
