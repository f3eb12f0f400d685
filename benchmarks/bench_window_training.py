"""Training speed in the studio window vs a bare PyTorch loop on the same model, in one run.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_window_training.py [steps]

The bare loop is timed at 1 and at 2 torch threads and the better one is the reference; the
window runs its real worker thread with live plots, gradient bars and the 30 Hz repaint timer.
Target: window / best bare >= 0.90. One figure per line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import torch
from torch.nn import functional as F

from peft_studio.core.data import load_builtin
from peft_studio.core.experiment import Experiment, Setup

SETUP = Setup("tiny", "lora", {}, seed=0)  # the window's default: tiny + intents + LoRA, full batch


def bare_loop_steps_per_second(threads: int, steps: int) -> float:
    torch.set_num_threads(threads)
    experiment = Experiment(SETUP, load_builtin("intents"))
    optimizer = torch.optim.Adam(experiment.model.trainable_parameters(), lr=1e-2)
    for warm in (True, False):
        started = time.perf_counter()
        for _ in range(10 if warm else steps):
            loss = F.cross_entropy(experiment.model(experiment.train_ids, experiment.train_mask),
                                   experiment.train_labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return steps / (time.perf_counter() - started)


def window_steps_per_second(steps: int) -> float:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from peft_studio.gui.app import make_app
    from peft_studio.gui.window import MainWindow

    app = make_app([])
    window = MainWindow()
    window.resize(1600, 1000)
    window.show()
    window.controller.set_training(steps=steps, eval_every=10)
    app.processEvents()
    started = time.perf_counter()
    window.runner.play_pause()
    while window.runner.active:
        app.processEvents()
        time.sleep(0.002)
    elapsed = time.perf_counter() - started
    done = window.runner.step
    window.close()
    return done / elapsed  # no warm-up run: the window pays its own start-up, as a user's would


def measure(part: str, steps: int) -> float:
    """One measurement in a fresh process: torch's per-thread state from one must not slow another."""
    result = subprocess.run([sys.executable, __file__, str(steps), part], capture_output=True, text=True,
                            check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main(steps: int) -> None:
    bare = {threads: measure(f"bare{threads}", steps) for threads in (1, 2)}
    for threads, rate in bare.items():
        print(f"bare loop, {threads} torch thread(s), steps/s = {rate:.1f}")
    window = measure("window", steps)
    print(f"studio window (worker thread, live plots), steps/s = {window:.1f}")
    print(f"window / best bare loop = {window / max(bare.values()):.3f}")


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 600
    if len(sys.argv) > 2:
        part = sys.argv[2]
        print(window_steps_per_second(count) if part == "window" else bare_loop_steps_per_second(int(part[4:]), count))
    else:
        main(count)
