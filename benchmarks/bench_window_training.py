"""Training speed in the studio window vs a bare PyTorch loop on the same model, in one run.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_window_training.py [steps]

The bare loop is timed at 1, 2, 4 and all-cores torch threads (those the machine has) and the best
is the reference; the window runs its real worker thread with live plots, gradient bars and its
frame timer (30 Hz, or slower within the GUI's CPU budget when training takes every core), its
GUI thread idle in Qt's event loop as in the app. Each part runs `ROUNDS` times, interleaved,
each time in a fresh process, and keeps its best rate: on a shared 2-core machine a single timing
swings by 10-15%, and the best of several is the least disturbed one (as `timeit` advises).
Target: window / best bare >= 0.90 (the ratio of medians is printed too). One figure per line.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import torch
from torch.nn import functional as F

from peft_studio.core.data import load_builtin
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.threads import usable_cores

SETUP = Setup("tiny", "lora", {}, seed=0)  # the window's default: tiny + intents + LoRA, full batch
ROUNDS = 3
CORES = usable_cores()
THREAD_COUNTS = sorted({n for n in (1, 2, 4, CORES) if n <= CORES})  # the bare loop's candidates


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


def window_steps_per_second(steps: int) -> tuple[float, float, int]:
    """Steps/s of a run in the window, the frames/s it repainted at meanwhile, its torch threads at the end."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop

    from peft_studio.gui.app import make_app
    from peft_studio.gui.window.main_window import MainWindow

    app = make_app([])
    window = MainWindow()
    window.resize(1600, 1000)
    window.show()
    loop = QEventLoop()
    window.runner.finished.connect(loop.quit)
    frames = []
    window.runner.events.connect(frames.append)
    for warm in (True, False):  # a 10-step run first, like the bare loop's 10 warm-up steps
        window.runner.reset()
        window.controller.set_training(steps=10 if warm else steps, eval_every=10)
        app.processEvents()
        frames.clear()
        started = time.perf_counter()
        window.runner.play_pause()
        loop.exec()  # the GUI thread sleeps between events, as under app.exec()
    elapsed = time.perf_counter() - started
    done = window.runner.step
    threads = window.runner.tuner.threads
    window.runner.stop_and_wait()  # close() no longer waits for the worker: end the run first
    window.close()
    return done / elapsed, len(frames) / elapsed, threads


def measure(part: str, steps: int) -> list[float]:
    """One measurement in a fresh process: torch's per-thread state from one must not slow another."""
    result = subprocess.run([sys.executable, __file__, str(steps), part], capture_output=True, text=True,
                            check=True)
    return [float(value) for value in result.stdout.strip().splitlines()[-1].split()]


def main(steps: int) -> None:
    rates: dict[str, list[float]] = {f"bare{threads}": [] for threads in THREAD_COUNTS}
    rates["window"] = []
    frame_rates = []
    for _ in range(ROUNDS):
        for part, found in rates.items():
            rate, *frames = measure(part, steps)
            found.append(rate)
            frame_rates += frames[:1]
    for threads in THREAD_COUNTS:
        print(f"bare loop, {threads} torch thread(s), steps/s = {_best(rates[f'bare{threads}'])}")
    print(f"studio window (worker thread, live plots), steps/s = {_best(rates['window'])}")
    print(f"studio window repaints, frames/s = {statistics.median(frame_rates):.1f} (median)")
    bare = [rates[f"bare{threads}"] for threads in THREAD_COUNTS]
    best_bare = max(max(found) for found in bare)
    median_bare = max(statistics.median(found) for found in bare)
    print(f"window / best bare loop = {max(rates['window']) / best_bare:.3f} "
          f"(medians: {statistics.median(rates['window']) / median_bare:.3f})")


def _best(found: list[float]) -> str:
    return f"{max(found):.1f} (best of {', '.join(f'{rate:.0f}' for rate in found)})"


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1200
    if len(sys.argv) > 2:
        part = sys.argv[2]
        if part == "window":
            print(*window_steps_per_second(count))
        else:
            print(bare_loop_steps_per_second(int(part[4:]), count))
    else:
        main(count)
