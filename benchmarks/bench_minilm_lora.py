"""LoRA on the pretrained MiniLM base: training steps per second, batch 16 of short sentences, 2 CPU threads.

    python benchmarks/bench_minilm_lora.py            # speed: one figure per line (about 15 s)
    python benchmarks/bench_minilm_lora.py accuracy   # pretrained vs random base: the README table (about 6 min)

Lines:
  minilm load (cached) ms = ...                      rebuilding the base, as the GUI does on every setting change
  minilm lora r=8 batch=16 steps/s = ...             the studio trainer (peft_studio.core.runs.train.train)
  minilm lora r=8 batch=16 bare torch steps/s = ...  the same model and batches in a plain PyTorch loop
  minilm lora trainer / bare torch = ...             the trainer's overhead as a ratio (1.0 = none)
  tiny lora r=8 batch=16 steps/s = ...               the random `tiny` base, for scale

Accuracy lines: validation accuracy after 100 Adam steps of batch 16 (seed 0), the best over
lr 1e-3, 3e-3, 1e-2 for each base and method, e.g.
  accuracy sentiment lora minilm = 1.00 (lr 0.001: 1.00, lr 0.003: 1.00, lr 0.01: 0.75)
"""

from __future__ import annotations

import os
import sys
import time

import torch
from torch.nn import functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from peft_studio.core.bases.pretrained import load_pretrained  # noqa: E402
from peft_studio.core.data import load_builtin  # noqa: E402
from peft_studio.core.model.experiment import Experiment, Setup  # noqa: E402
from peft_studio.core.runs.train import TrainSettings, train  # noqa: E402

THREADS = 2
BATCH = 16
WARMUP, STEPS, ROUNDS = 5, 30, 3  # the best of 3 interleaved rounds (timeit's rule: the least disturbed)


def lora_experiment(base: str) -> Experiment:
    return Experiment(Setup(base, "lora", {"r": 8, "targets": "q,v"}, seed=0), load_builtin("sentiment"))


def trainer_steps_per_second(base: str) -> float:
    experiment = lora_experiment(base)
    settings = TrainSettings(steps=WARMUP + STEPS, lr=1e-3, batch_size=BATCH, eval_every=10_000, track_grads=False)
    started = None
    for event in train(experiment, settings):
        if event.step == WARMUP - 1:
            started = time.perf_counter()
    return STEPS / (time.perf_counter() - started)


def bare_steps_per_second() -> float:
    """The same model and batch size in the plainest PyTorch loop: forward, loss, backward, Adam."""
    experiment = lora_experiment("minilm")
    model = experiment.model
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    count = len(experiment.train_labels)
    model.train()
    started = None
    for step in range(WARMUP + STEPS):
        if step == WARMUP:
            started = time.perf_counter()
        index = torch.randperm(count, generator=generator)[:BATCH]
        loss = F.cross_entropy(model(experiment.train_ids[index], experiment.train_mask[index]),
                               experiment.train_labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return STEPS / (time.perf_counter() - started)


def best(values: list[float]) -> float:
    return max(values)


ACCURACY_METHODS = ("head-only", "lora", "ia3", "prompt-tuning")
ACCURACY_LRS = (1e-3, 3e-3, 1e-2)


def accuracy_table() -> None:
    torch.set_num_threads(THREADS)
    for dataset in ("sentiment", "intents"):
        data = load_builtin(dataset)
        for method in ACCURACY_METHODS:
            for base in ("tiny", "minilm"):
                scores = []
                for lr in ACCURACY_LRS:
                    experiment = Experiment(Setup(base, method, {}, seed=0), data)
                    settings = TrainSettings(steps=100, lr=lr, batch_size=BATCH, seed=0, eval_every=1000,
                                             track_grads=False)
                    scores.append(list(train(experiment, settings))[-1].val_accuracy)
                sweep = ", ".join(f"lr {lr:g}: {score:.2f}" for lr, score in zip(ACCURACY_LRS, scores, strict=True))
                print(f"accuracy {dataset} {method} {base} = {max(scores):.2f} ({sweep})", flush=True)


def main() -> None:
    torch.set_num_threads(THREADS)
    load_pretrained("minilm")  # fill the cache
    started = time.perf_counter()
    for _ in range(5):
        load_pretrained("minilm")
    print(f"minilm load (cached) ms = {(time.perf_counter() - started) / 5 * 1000:.0f}")
    tokens = load_pretrained("minilm").tokenizer.batch(list(load_builtin("sentiment").train_texts))[1].sum(1)
    print(f"minilm sentiment tokens per sentence (mean) = {tokens.float().mean():.1f}")
    trainer, bare = [], []
    for _ in range(ROUNDS):
        trainer.append(trainer_steps_per_second("minilm"))
        bare.append(bare_steps_per_second())
    print(f"minilm lora r=8 batch={BATCH} steps/s = {best(trainer):.1f}")
    print(f"minilm lora r=8 batch={BATCH} bare torch steps/s = {best(bare):.1f}")
    print(f"minilm lora trainer / bare torch = {best(trainer) / best(bare):.2f}")
    print(f"tiny lora r=8 batch={BATCH} steps/s = {best([trainer_steps_per_second('tiny') for _ in range(3)]):.1f}")


if __name__ == "__main__":
    accuracy_table() if sys.argv[1:] == ["accuracy"] else main()
