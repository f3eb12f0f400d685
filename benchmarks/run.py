"""Every speed figure of PEFT Studio, measured side by side; one `name: value (spread; goal: verdict)` line each.

    python benchmarks/run.py                 # the full run: up to 7 measured rounds per ratio (at most ~15 min)
    python benchmarks/run.py --quick         # a smoke run: one round, NOT a measurement (9 min at load 12)
    python benchmarks/run.py --only family   # the figures whose names contain "family" (any substring)
    python benchmarks/run.py --self-check    # A against A (the bare loop): 1.00 must lie within the spread
    python benchmarks/run.py --list          # the figure names and their goals, measuring nothing

How (see harness.py): each side of a ratio is a long-lived child process, the sides are measured in
turn (A B, B A, ...) after a discarded warm-up round, a ratio is taken per round from two neighbouring
measurements, and each figure is the median of its rounds with the interquartile range, the min-max
range and the round count. A figure whose IQR is wider than its gap to the goal says "inconclusive".
The load average is printed before and after: on a shared machine, read the spreads, not one number.

The bare loop, the reference for `gui_vs_bare` and `core_vs_bare`, is the plainest PyTorch loop on the
same model (tiny + intents + LoRA, full batch) at every thread count the machine offers, and with the
OpenMP wait policy PASSIVE at the largest count; each round's reference is the fastest of them in that
round. "Loaded" figures are measured while another process (`while True: pass`) keeps one core busy;
the benchmark starts and stops it, and starts fresh sides under it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]  # the bench modules, and this checkout's peft_studio

from harness import (  # noqa: E402 - after the path set-up above
    ChildSide,
    Figure,
    FreshSide,
    Neighbour,
    Sides,
    interleave,
    load_average,
    machine,
    per_round_ratios,
    usable_cores,
)

CORES = usable_cores()

# name -> goal (issues 11, 20 and 26; printed by --list, judged in the output; RESULTS.md quotes them)
FIGURES = {
    "gui_vs_bare": ">= 0.95",
    "gui_vs_bare_loaded": ">= 0.90",
    "core_vs_bare": ">= 0.97",
    "ui_lateness_p99_ms": "<= 16",
    "ui_lateness_max_ms": "<= 50",
    "frames_per_s": "30 with a spare core, never below 10",
    "frames_per_s_loaded": "never below 10",
    "startup_ratio": "<= 1.3",
    "startup_interactive_ratio": "(time to interactive / import floor; the first paint is the goal)",
    "minilm_lora_vs_peft": "<= 0.9",
    "qlora_bytes_ratio": "<= 0.15",
    "plot_append_ms_1m": "GUI stays responsive",
    "minilm_steps_per_s": "(batch 16, the studio trainer)",
    "minilm_lora_vs_peft_same_padding": "(context: PEFT's loop given the batches the studio trains on, each "
                                        "without its unused padding)",
    "family_tiny_s": "<= 60",
    "family_tiny_loaded_s": "<= 120",
    "edit_repaint_llama70b_ms": "< 150",
    "base_switch_minilm_s": "< 1",
    "decoder_lora_vs_peft": "<= 1.0",  # studio / transformers+peft LoRA step (bench_decoders.py)
    "decoder_tokens_per_s": ">= 1.0",  # studio / transformers generate() tokens per second
    "click_count_llama70b_ms": "< 150",  # a mouse click on a 70B base's insertion point to the new count
    "lens_live_vs_off": ">= 0.95",  # the window training with the Lens dock live / with it hidden (issue 25)
    "lens_live_prompt_vs_off": ">= 0.95",  # the same for prompt tuning: its own lens on a twin of the model
}

# steps per round, measured rounds, and each group's own settings; --quick shrinks them
# (each measurement also stops at a time limit, so that a collapsed side cannot stretch the run unboundedly)
FULL = {"rounds": 7, "train_steps": 300, "train_max_s": 4.0, "minilm_steps": 12, "minilm_max_s": 4.0,
        "startup_rounds": 7, "lateness_s": 3.0, "family_rounds": 3, "family_loaded_rounds": 2, "family_steps": 60,
        "edit_rounds": 7, "switch_rounds": 3, "plot_frames": 20, "decoder_rounds": 3, "decoder_steps": 5}
QUICK = {"rounds": 1, "train_steps": 100, "train_max_s": 2.0, "minilm_steps": 4, "minilm_max_s": 2.0,
         "startup_rounds": 1, "lateness_s": 1.0, "family_rounds": 1, "family_loaded_rounds": 1, "family_steps": 10,
         "edit_rounds": 1, "switch_rounds": 1, "plot_frames": 5, "decoder_rounds": 1, "decoder_steps": 2}
FAMILY_LIMIT = 3.0  # a family run is stopped at 3x its goal: the figure then says "at least"
# seconds each group may take before it stops starting rounds (after at least 3, or 2 for the family): they
# bound a full run to about 15 minutes however loaded the machine is (16.5 min with budgets 20% larger at load
# 9-12); a quiet machine finishes every round sooner
BUDGETS = {"training": 110, "lateness": 30, "startup": 60, "minilm": 60, "plot": 25, "edit": 45, "switch": 60,
           "family": 90, "family_loaded": 100, "decoders": 120, "lens": 90}


# ---- parts: run inside a child; each returns the function that measures one round -------------------
def serve_bare(threads: int, steps: int, max_s: float) -> Callable[[], dict]:
    """The plainest PyTorch loop on the window's default model, at a fixed thread count."""
    import torch
    from torch.nn import functional as F

    from peft_studio.core.data import load_builtin
    from peft_studio.core.model.experiment import Experiment, Setup

    torch.set_num_threads(threads)
    experiment = Experiment(Setup("tiny", "lora", {}, seed=0), load_builtin("intents"))
    model, ids, mask, labels = experiment.model, experiment.train_ids, experiment.train_mask, experiment.train_labels
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-2)
    model.train()

    def step() -> None:
        loss = F.cross_entropy(model(ids, mask), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(10):
        step()

    def once() -> dict:
        started = time.perf_counter()
        done = 0
        while done < steps and (done < 10 or time.perf_counter() - started < max_s):
            step()
            done += 1
        return {"sps": done / (time.perf_counter() - started)}

    return once


def serve_window(steps: int, max_s: float, lens: int = 0, method: str = "") -> Callable[[], dict]:
    """The studio window training its default setup (or `method` on it): Reset, then Play `steps` steps (stopped
    after `max_s`), the GUI thread idle in Qt's event loop as under app.exec(). Reports steps/s, frames/s and
    the trainer's torch threads. `lens=1`: with the Lens dock shown, so its live lens follows the run
    (snapshots, a lens thread, drawing), and each round waits for the look that follows a run before the next
    starts."""
    from PySide6.QtCore import QEventLoop, QTimer

    from peft_studio.gui.app import make_app
    from peft_studio.gui.window.main_window import MainWindow

    app = make_app([])
    window = MainWindow()
    window.resize(1600, 1000)
    window.show()
    loop = QEventLoop()
    window.runner.finished.connect(loop.quit)
    frames: list[Any] = []
    window.runner.events.connect(frames.append)
    window.controller.set_training(steps=steps, eval_every=10)
    if method and not (window.controller.set_method(method, {}) and window.controller.wait_for_builds()):
        raise RuntimeError(f"the window cannot use method {method!r} on its default base")

    limit = QTimer()
    limit.setSingleShot(True)
    limit.setInterval(int(max_s * 1000))
    limit.timeout.connect(window.runner.stop)  # a slow round ends early: steps/s is steps done / time taken
    panel = window.docks.lens_panel
    if lens:
        window.docks.show_dock("lens")

    def once() -> dict:
        while panel.job.running:  # the look after the last run (forgetting): not part of the next round
            app.processEvents()
            time.sleep(0.01)
        window.runner.reset()
        app.processEvents()
        frames.clear()
        drawn = panel.live_updates
        started, gui_cpu = time.perf_counter(), time.thread_time()
        window.runner.play_pause()
        limit.start()
        loop.exec()
        limit.stop()
        elapsed, gui_cpu = time.perf_counter() - started, time.thread_time() - gui_cpu
        return {"sps": window.runner.step / elapsed, "fps": len(frames) / elapsed,
                "threads": window.runner.threads_used, "gui_cpu": gui_cpu / elapsed,
                "gui_ms_per_frame": 1000 * gui_cpu / max(1, len(frames)),
                "lens_per_s": (panel.live_updates - drawn) / elapsed}

    return once


def serve_core(steps: int, max_s: float) -> Callable[[], dict]:
    """The headless trainer as `peft-studio train` runs it: the core's generator, the thread count the CLI
    measures before the first step (once: the same run again keeps it)."""
    import torch

    from peft_studio.cli import _set_threads
    from peft_studio.core.data import load_builtin
    from peft_studio.core.model.experiment import Experiment, Setup
    from peft_studio.core.runs.train import TrainSettings, train

    experiment = Experiment(Setup("tiny", "lora", {}, seed=0), load_builtin("intents"))
    settings = TrainSettings(steps=steps, eval_every=10, track_grads=False)
    _set_threads("auto", experiment, settings)
    for _ in train(experiment, TrainSettings(steps=10, eval_every=10, track_grads=False)):
        pass

    def once() -> dict:
        experiment.reset()
        started = time.perf_counter()
        done = 0
        for _ in train(experiment, settings):
            done += 1
            if done >= 10 and time.perf_counter() - started > max_s:
                break  # a slow round ends early: steps/s is steps done / time taken
        return {"sps": done / (time.perf_counter() - started), "threads": torch.get_num_threads()}

    return once


def serve_lateness(seconds: float) -> Callable[[], dict]:
    """A 5 ms timer on the GUI thread while the window trains: how late each period ends."""
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer

    from peft_studio.gui.app import make_app
    from peft_studio.gui.window.main_window import MainWindow

    app = make_app([])
    window = MainWindow()
    window.show()
    window.controller.set_training(steps=10_000_000, eval_every=10)
    window.runner.play_pause()
    while window.runner.step < 20:  # warm-up joined, the run under way
        app.processEvents(QEventLoop.ProcessEventsFlag.WaitForMoreEvents, 50)

    def once() -> dict:
        clock, lateness, last = QElapsedTimer(), [], [0.0]

        def tick() -> None:
            now = clock.nsecsElapsed() / 1e6
            lateness.append(now - last[0] - 5.0)
            last[0] = now

        timer = QTimer()
        timer.setInterval(5)
        timer.timeout.connect(tick)
        loop = QEventLoop()
        QTimer.singleShot(int(seconds * 1000), loop.quit)
        clock.start()
        timer.start()
        loop.exec()
        timer.stop()
        periods = sorted(lateness[1:])
        return {"p99": periods[min(len(periods) - 1, int(0.99 * len(periods)))], "max": periods[-1]}

    return once


MINILM_BATCH = 16


def serve_minilm_studio(steps: int, max_s: float) -> Callable[[], dict]:
    """The studio trainer (core.runs.train) on LoRA MiniLM (r=8, alpha 16, q+v), batch 16: seconds per step of one
    long run (its checks and events included; its start and end, paid once a run, are not: the PEFT side has none),
    at the thread count the studio measures for the run (reported, so that the PEFT side uses the same)."""
    from peft_studio.cli import _set_threads
    from peft_studio.core.data import load_builtin
    from peft_studio.core.model.experiment import Experiment, Setup
    from peft_studio.core.runs.train import TrainSettings, train

    experiment = Experiment(Setup("minilm", "lora", {"r": 8, "alpha": 16.0, "targets": "q,v"}, seed=0),
                            load_builtin("sentiment"))
    settings = TrainSettings(steps=10_000_000, lr=1e-3, batch_size=MINILM_BATCH, eval_every=10_000_000,
                             track_grads=False)
    threads = _set_threads("auto", experiment, settings)
    run = train(experiment, settings)
    for _ in range(3):
        next(run)

    def once() -> dict:
        started = time.perf_counter()
        done = 0
        while done < steps and (done < 3 or time.perf_counter() - started < max_s):
            next(run)
            done += 1
        return {"step_s": (time.perf_counter() - started) / done, "threads": threads}

    return once


def serve_minilm_peft(steps: int, max_s: float, threads: int, trim: int = 0) -> Callable[[], dict]:
    """PEFT's LoRA on transformers' BertModel with the same checkpoint, head, batches, optimizer and thread count
    as the studio side (dropout off: the studio's encoder has none, so both do the same arithmetic). The batches
    come as tokenized (padded to the dataset's longest text), as a loop over pre-tokenized tensors gets them;
    `trim=1`: each batch loses its unused padding columns as the studio trainer's do (the context figure)."""
    import peft
    import torch
    import transformers
    from torch.nn import functional as F

    from peft_studio.core.bases.pretrained import minilm_folder
    from peft_studio.core.data import load_builtin
    from peft_studio.core.model.experiment import Experiment, Setup
    from peft_studio.core.runs.padding import trim_trailing_padding
    from peft_studio.core.runs.train import _batches

    torch.set_num_threads(threads)
    data = load_builtin("sentiment")
    studio = Experiment(Setup("minilm", "head-only", {}, seed=0), data)  # the tokenized batches
    bert = transformers.BertModel.from_pretrained(str(minilm_folder()), hidden_dropout_prob=0.0,
                                                  attention_probs_dropout_prob=0.0)
    wrapped = peft.get_peft_model(bert, peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                        target_modules=["query", "value"]))
    head = torch.nn.Linear(384, data.num_labels)
    optimizer = torch.optim.Adam([p for p in wrapped.parameters() if p.requires_grad] + list(head.parameters()),
                                 lr=1e-3)
    wrapped.train()

    def run(count: int, limit_s: float = float("inf")) -> int:
        batches = _batches(len(studio.train_labels), MINILM_BATCH, 0)  # the studio trainer's order
        started = time.perf_counter()
        for done in range(1, count + 1):
            index = next(batches)
            ids, mask = studio.train_ids[index], studio.train_mask[index]
            if trim:
                ids, mask = trim_trailing_padding(ids, mask)
            hidden = wrapped(input_ids=ids, attention_mask=mask.long()).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            loss = F.cross_entropy(head((hidden * weights).sum(1) / weights.sum(1)), studio.train_labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if done >= 3 and time.perf_counter() - started > limit_s:
                break
        return done

    run(3)

    def once() -> dict:
        started = time.perf_counter()
        done = run(steps, max_s)
        return {"step_s": (time.perf_counter() - started) / done}

    return once


def serve_plot(points: int, frames: int) -> Callable[[], dict]:
    """Milliseconds to append one frame's steps and repaint the live plots holding `points` points."""
    from peft_studio.gui.app import make_app
    from peft_studio.gui.panels.plots import LivePlots

    app = make_app([])
    plots = LivePlots()
    plots.resize(1200, 500)
    plots.show()
    for step in range(points):
        plots.add({"step": step, "loss": 1.0 / (1 + step * 1e-4), "accuracy": 0.5,
                   "val_loss": None, "val_accuracy": None})
    plots.refresh()
    plots.repaint()
    app.processEvents()
    counter = [points]

    def once() -> dict:
        times = []
        for _ in range(frames):
            started = time.perf_counter()
            for _ in range(30):
                plots.add({"step": counter[0], "loss": 0.5, "accuracy": 0.6, "val_loss": None,
                           "val_accuracy": None})
                counter[0] += 1
            plots.refresh()
            plots.repaint()  # synchronous paint of the plots and their children
            app.processEvents()
            times.append(time.perf_counter() - started)
        return {"ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000}

    return once


def _repainted_after(app: Any, window: Any, edit: Callable[[], object], timeout_s: float = 120.0) -> float:
    """Seconds from calling `edit` to the diagram's next paint once the window is no longer building
    (a window that builds off the GUI thread shows "building…" first: that paint does not count)."""
    from PySide6.QtCore import QEvent, QEventLoop, QObject, QTimer

    painted: list[float] = []
    # The wait is an event loop, as in the app: polling processEvents in a Python loop kept the GUI thread
    # spinning in Python, and a build on a worker thread then waited for the GIL (a MiniLM switch took 1 s
    # more than the same build done in place).
    loop = QEventLoop()

    class Paints(QObject):
        def eventFilter(self, watched: Any, event: Any) -> bool:  # noqa: N802 - Qt override
            if event.type() == QEvent.Type.Paint and not getattr(window, "building", False) and not painted:
                painted.append(time.perf_counter())
                loop.quit()
            return False

    viewport = window.view.viewport()
    spy = Paints()
    tick = QTimer()  # the loop also ends every 50 ms, so the deadline is checked whatever happens inside it
    tick.timeout.connect(loop.quit)
    started = time.perf_counter()
    viewport.installEventFilter(spy)
    try:
        edit()
        window.view.viewport().update()  # an edit that changes nothing on screen still ends in a frame
        tick.start(50)
        while not painted:
            loop.exec()
            if time.perf_counter() - started > timeout_s:
                raise RuntimeError(f"no repaint within {timeout_s:.0f} s")
    finally:
        tick.stop()
        viewport.removeEventFilter(spy)
    return painted[0] - started


def _window_for_edits() -> tuple[Any, Any]:
    from peft_studio.gui.app import make_app
    from peft_studio.gui.window.main_window import MainWindow

    app = make_app([])
    window = MainWindow()
    window.resize(1600, 1000)
    window.show()
    app.processEvents()
    return app, window


def serve_edit_llama70b() -> Callable[[], dict]:
    """Llama-3-70B (meta device, layers collapsed), LoRA: one option edit (r 8 <-> 16) to the repaint."""
    app, window = _window_for_edits()
    c = window.controller
    if not c.set_base("llama-3-70b"):
        raise RuntimeError("llama-3-70b does not build")
    window.scene.collapsed = True
    window.refresh_diagram()
    app.processEvents()
    values = [16, 8]

    def once() -> dict:
        values.reverse()
        return {"ms": 1000 * _repainted_after(app, window, lambda: c.set_option("r", values[0]))}

    return once


def serve_base_switch_minilm() -> Callable[[], dict]:
    """From tiny to minilm (same method): seconds from the switch to the repaint (measure it once per window:
    later switches find the checkpoint cached)."""
    app, window = _window_for_edits()
    c = window.controller

    def once() -> dict:
        c.set_base("tiny")
        app.processEvents()
        seconds = _repainted_after(app, window, lambda: c.set_base("minilm"))
        if c.setup.base != "minilm":
            raise RuntimeError("the switch to minilm was refused")
        return {"s": seconds}

    return once


def serve_spin(work: int) -> Callable[[], dict]:
    """Pure-Python arithmetic: the cheapest side, for the harness's own A-vs-A check."""
    def once() -> dict:
        started = time.perf_counter()
        total = 0
        for i in range(work):
            total += i * i % 7
        return {"s": time.perf_counter() - started}

    return once


def serve_click() -> Callable[[], dict]:
    """Llama-3-70B in a window: a mouse click on an insertion point to the new count (bench_click.py)."""
    import bench_click

    def once() -> dict:
        return bench_click.click_to_count(1)

    return once


PARTS: dict[str, Callable[..., Callable[[], dict]]] = {
    "bare": serve_bare, "window": serve_window, "core": serve_core, "lateness": serve_lateness,
    "minilm-studio": serve_minilm_studio, "minilm-peft": serve_minilm_peft, "plot": serve_plot,
    "edit-llama70b": serve_edit_llama70b, "switch-minilm": serve_base_switch_minilm, "spin": serve_spin,
    "click": serve_click,
}


def _argument(value: str) -> int | float | str:
    """A side's argument from its command line: a number, else a name (e.g. a method)."""
    try:
        return float(value) if "." in value else int(value)
    except ValueError:
        return value


def serve(name: str, values: list[str]) -> None:
    """The child's loop: set up, say ready, then measure once per "go" line until stdin closes."""
    import peft_studio  # noqa: F401 - first, as in the app

    once = PARTS[name](*map(_argument, values))
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() == "go":
            print(json.dumps(once()), flush=True)


# ---- the parent ----------------------------------------------------------------------------------------
_STATE = tempfile.mkdtemp(prefix="peft-studio-bench-")  # the window's settings and runs: never the user's


def child_env(policy: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
    env.pop("OMP_WAIT_POLICY", None)  # torch's default unless a side asks for one
    # As an installed app runs: its modules' bytecode cached (pip compiles it at install). With
    # PYTHONDONTWRITEBYTECODE set, every start compiled ~100 modules of this checkout from source (0.3 s).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    env["XDG_CONFIG_HOME"] = os.path.join(_STATE, "config")
    env["XDG_DATA_HOME"] = os.path.join(_STATE, "data")
    env["XDG_STATE_HOME"] = os.path.join(_STATE, "state")
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def side(name: str, part: str, *args: object, policy: str | None = None) -> ChildSide:
    command = [sys.executable, str(Path(__file__).resolve()), "--serve", part, *map(str, args)]
    return ChildSide(name, command, child_env(policy))


def thread_counts() -> list[int]:
    return sorted({n for n in (1, 2, 4, CORES) if n <= CORES})


def bare_sides(steps: int, max_s: float) -> list[ChildSide]:
    sides = [side(f"bare{n}", "bare", n, steps, max_s) for n in thread_counts()]
    if CORES > 1:
        sides.append(side(f"bare{CORES}-passive", "bare", CORES, steps, max_s, policy="PASSIVE"))
    return sides


def fastest_bare(found: dict[str, list[dict]]) -> list[float]:
    """Each round's fastest bare loop (every thread count and wait policy measured in that round)."""
    keys = [key for key in found if key.startswith("bare")]
    return [max(found[key][i]["sps"] for key in keys) for i in range(len(found[keys[0]]))]


def same_threads_ratios(found: dict[str, list[dict]], name: str) -> list[float]:
    """Each round's rate of `name` over the bare loop's at the thread count `name` ran with (default policy)."""
    return [mine["sps"] / found[f"bare{int(mine['threads'])}"][i]["sps"] for i, mine in enumerate(found[name])]


def log(*parts: object) -> None:
    print("#", *parts, file=sys.stderr, flush=True)


class Run:
    """One benchmark run: the chosen figures, measured group by group."""

    def __init__(self, quick: bool, only: list[str] | None) -> None:
        self.quick = quick
        self.cfg = QUICK if quick else FULL
        self.only = only
        self.figures: list[Figure] = []

    def budget(self, group: str) -> float | None:
        """The group's time budget (a full run only: a quick run measures one round anyway)."""
        return None if self.quick else BUDGETS[group]

    def wanted(self, *names: str) -> bool:
        return self.only is None or any(part in name for name in names for part in self.only)

    def add(self, name: str, values: list[float], note: str = "") -> None:
        figure = Figure(name, values, FIGURES.get(name, ""), smoke=self.quick, note=note)
        self.figures.append(figure)
        print(figure.line(), flush=True)

    def training(self, loaded: bool) -> None:
        cfg, suffix = self.cfg, "_loaded" if loaded else ""
        wanted_core = not loaded and self.wanted("core_vs_bare")
        if not self.wanted(f"gui_vs_bare{suffix}", f"frames_per_s{suffix}") and not wanted_core:
            return
        log("training,", "one core busy" if loaded else "quiet", "- load average", load_average())
        with Sides() as sides:
            for bare in bare_sides(cfg["train_steps"], cfg["train_max_s"]):
                sides.add(bare)
            sides.add(side("window", "window", cfg["train_steps"], cfg["train_max_s"]))
            if wanted_core:
                sides.add(side("core", "core", cfg["train_steps"], cfg["train_max_s"]))
            found = interleave(sides.sides, cfg["rounds"], log=log, budget_s=self.budget("training"))
        bare = fastest_bare(found)
        window = found["window"]
        self.add(f"gui_vs_bare{suffix}", per_round_ratios([w["sps"] for w in window], bare))
        if wanted_core:
            self.add("core_vs_bare", per_round_ratios([c["sps"] for c in found["core"]], bare))
        # context: against the bare loop at the same thread count and wait policy, the studio's own overhead
        # apart from its choice of threads (the fastest bare may use a count or policy the app did not choose)
        self.add(f"gui_vs_bare_same_threads{suffix}", same_threads_ratios(found, "window"))
        if wanted_core:
            self.add("core_vs_bare_same_threads", same_threads_ratios(found, "core"))
        self.add(f"frames_per_s{suffix}", [w["fps"] for w in window])
        self.add(f"bare_steps_per_s{suffix}", bare)
        self.add(f"gui_steps_per_s{suffix}", [w["sps"] for w in window])
        self.add(f"gui_threads{suffix}", [w["threads"] for w in window])
        self.add(f"gui_thread_cpu_share{suffix}", [w["gui_cpu"] for w in window],
                 note="the GUI thread's CPU over the run's wall time: what painting takes from a core")
        self.add(f"gui_thread_ms_per_frame{suffix}", [w["gui_ms_per_frame"] for w in window])
        if wanted_core:
            self.add("core_steps_per_s", [c["sps"] for c in found["core"]])
        best = {key: statistics.median(r["sps"] for r in rounds) for key, rounds in found.items()}
        log("median steps/s per side:", {key: round(value, 1) for key, value in best.items()})

    def lateness(self) -> None:
        if not self.wanted("ui_lateness_p99_ms", "ui_lateness_max_ms"):
            return
        with Sides() as sides:
            found = interleave([sides.add(side("lateness", "lateness", self.cfg["lateness_s"]))],
                               self.cfg["rounds"], log=log, budget_s=self.budget("lateness"))["lateness"]
        self.add("ui_lateness_p99_ms", [r["p99"] for r in found])
        self.add("ui_lateness_max_ms", [r["max"] for r in found])

    def startup(self) -> None:
        if not self.wanted("startup_ratio", "startup_interactive_ratio"):
            return
        app_script = ("import sys, time\nfrom peft_studio.gui import app\n"
                      "def painted(window):\n    print('painted', time.time(), flush=True)\n"
                      "def interactive(window):\n    print('interactive', time.time(), flush=True)\n"
                      "    window.close()\n"
                      "sys.exit(app.main(on_painted=painted, on_interactive=interactive))\n")
        floor_script = ("import time\nimport torch\nfrom PySide6 import QtWidgets\nimport pyqtgraph\n"
                        "print('imported', time.time(), flush=True)\n")

        def fresh(script: str) -> Callable[[], dict]:
            def measure() -> dict:
                started = time.time()
                result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                        env=child_env(), timeout=180)
                if result.returncode != 0:
                    raise RuntimeError(f"start-up child failed:\n{result.stderr[-3000:]}")
                return {key: float(value) - started for key, value in
                        (line.split() for line in result.stdout.splitlines() if line.strip())}
            return measure

        found = interleave([FreshSide("floor", fresh(floor_script)), FreshSide("app", fresh(app_script))],
                           self.cfg["startup_rounds"], log=log, budget_s=self.budget("startup"))
        floors = [r["imported"] for r in found["floor"]]
        self.add("startup_ratio", per_round_ratios([r["painted"] for r in found["app"]], floors))
        self.add("startup_interactive_ratio", per_round_ratios([r["interactive"] for r in found["app"]], floors))
        self.add("startup_s", [r["painted"] for r in found["app"]])
        self.add("startup_interactive_s", [r["interactive"] for r in found["app"]])
        self.add("import_floor_s", floors)

    def minilm(self) -> None:
        if self.wanted("minilm_lora_vs_peft", "minilm_steps_per_s"):
            steps, limit = self.cfg["minilm_steps"], self.cfg["minilm_max_s"]
            with Sides() as sides:
                studio = sides.add(side("studio", "minilm-studio", steps, limit))
                threads = studio.measure()["threads"]  # the studio's measured count: PEFT gets the same
                log("minilm: both sides train with", threads, "torch thread(s)")
                found = interleave([studio, sides.add(side("peft", "minilm-peft", steps, limit, threads)),
                                    sides.add(side("peft-trimmed", "minilm-peft", steps, limit, threads, 1))],
                                   self.cfg["rounds"], log=log, budget_s=self.budget("minilm"))
            studio = [r["step_s"] for r in found["studio"]]
            self.add("minilm_lora_vs_peft", per_round_ratios(studio, [r["step_s"] for r in found["peft"]]))
            self.add("minilm_lora_vs_peft_same_padding",
                     per_round_ratios(studio, [r["step_s"] for r in found["peft-trimmed"]]))
            self.add("minilm_steps_per_s", [1 / s for s in studio])
        if self.wanted("qlora_bytes_ratio"):
            script = ("import json\nfrom peft_studio.core.data import load_builtin\n"
                      "from peft_studio.core.model.experiment import Experiment, Setup\n"
                      "q = Experiment(Setup('minilm', 'qlora', {}, seed=0), load_builtin('sentiment'))"
                      ".census().quantization\nprint(json.dumps(q.ratio))\n")
            result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=child_env(),
                                    timeout=300, check=True)
            self.add("qlora_bytes_ratio", [json.loads(result.stdout.splitlines()[-1])], note="exact: not timed")

    def plot(self) -> None:
        if not self.wanted("plot_append_ms_1m"):
            return
        with Sides() as sides:
            found = interleave([sides.add(side("plot", "plot", 1_000_000, self.cfg["plot_frames"]))],
                               self.cfg["rounds"], log=log, budget_s=self.budget("plot"))["plot"]
        self.add("plot_append_ms_1m", [r["ms"] for r in found])

    def family(self, loaded: bool) -> None:
        """`peft-studio compare` on tiny + word-order, 60 steps, a fresh process each round (its start-up counts:
        it is what the user waits for), stopped at FAMILY_LIMIT x the goal."""
        name = "family_tiny_loaded_s" if loaded else "family_tiny_s"
        if not self.wanted(name):
            return
        runs = tempfile.mkdtemp(prefix="runs-", dir=_STATE)
        command = [sys.executable, "-m", "peft_studio", "compare", "--base", "tiny", "--dataset", "word-order",
                   "--steps", str(self.cfg["family_steps"]), "--runs-dir", runs]
        limit = FAMILY_LIMIT * float(FIGURES[name].split()[-1])
        stopped: list[bool] = []

        def measure() -> dict:
            started = time.perf_counter()
            try:
                result = subprocess.run(command, capture_output=True, text=True, env=child_env(), timeout=limit)
            except subprocess.TimeoutExpired:
                stopped.append(True)
                return {"s": limit}
            if result.returncode != 0:
                raise RuntimeError(f"compare failed:\n{result.stderr[-3000:]}")
            log("family:", result.stderr.strip().splitlines()[0])  # the thread count it chose
            return {"s": time.perf_counter() - started}

        log(f"family ({' '.join(command[3:10])}),", "one core busy" if loaded else "quiet")
        rounds = self.cfg["family_loaded_rounds" if loaded else "family_rounds"]
        found = interleave([FreshSide("family", measure)], rounds, warmup=0, log=log,
                           budget_s=self.budget("family_loaded" if loaded else "family"), min_rounds=2)
        notes = [] if self.cfg["family_steps"] == 60 else [f"{self.cfg['family_steps']} steps, not 60"]
        if stopped:
            notes.append(f"{len(stopped)} round(s) stopped at {limit:.0f} s: at least that")
        self.add(name, [r["s"] for r in found["family"]], note="; ".join(notes))

    def edits(self) -> None:
        if self.wanted("edit_repaint_llama70b_ms"):
            with Sides() as sides:
                found = interleave([sides.add(side("edit", "edit-llama70b"))], self.cfg["edit_rounds"], log=log,
                                   budget_s=self.budget("edit"))
            self.add("edit_repaint_llama70b_ms", [r["ms"] for r in found["edit"]])
        if self.wanted("click_count_llama70b_ms"):
            with Sides() as sides:
                found = interleave([sides.add(side("click", "click"))], self.cfg["edit_rounds"], log=log,
                                   budget_s=self.budget("edit"))
            self.add("click_count_llama70b_ms", [r["count_ms"] for r in found["click"]])
        if self.wanted("base_switch_minilm_s"):  # the first switch of a fresh window each round, as the user's
            def first_switch() -> dict:
                with Sides() as sides:
                    return sides.add(side("switch", "switch-minilm")).measure()

            found = interleave([FreshSide("switch", first_switch)], self.cfg["switch_rounds"], warmup=0, log=log,
                               budget_s=self.budget("switch"))
            self.add("base_switch_minilm_s", [r["s"] for r in found["switch"]])

    def decoders(self) -> None:
        """The random 6-layer Llama of width 576 against transformers + peft (bench_decoders.py): a fresh process
        per round, each timing both sides interleaved on the same checkpoint and batches."""
        if not self.wanted("decoder_lora_vs_peft", "decoder_tokens_per_s"):
            return
        script = ("import json, sys\nsys.path.insert(0, 'benchmarks')\nimport bench_decoders\n"
                  f"print(json.dumps(bench_decoders.measure(1, {self.cfg['decoder_steps']})))\n")

        def measure() -> dict:
            result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=child_env(),
                                    timeout=900, cwd=Path(__file__).resolve().parents[1])
            if result.returncode != 0:
                raise RuntimeError(f"decoder benchmark failed:\n{result.stderr[-3000:]}")
            return json.loads(result.stdout.splitlines()[-1])

        found = interleave([FreshSide("decoders", measure)], self.cfg["decoder_rounds"], warmup=0, log=log,
                           budget_s=self.budget("decoders"))["decoders"]
        self.add("decoder_lora_vs_peft", [r["decoder_lora_vs_peft"] for r in found])
        self.add("decoder_tokens_per_s", [r["decoder_tokens_per_s"] for r in found])

    def lens(self) -> None:
        """The window training with the live lens on against the same window with the Lens dock hidden."""
        cfg = self.cfg
        for method, suffix, what in (("lora", "", "ΔW"), ("prompt-tuning", "_prompt", "nearest-word and attention")):
            if not self.wanted(f"lens_live{suffix}_vs_off"):
                continue
            log(f"lens ({method}), quiet - load average", load_average())
            with Sides() as sides:
                sides.add(side("window", "window", cfg["train_steps"], cfg["train_max_s"], 0, method))
                sides.add(side("window-lens", "window", cfg["train_steps"], cfg["train_max_s"], 1, method))
                found = interleave(sides.sides, cfg["rounds"], log=log, budget_s=self.budget("lens"))
            live, off = found["window-lens"], found["window"]
            self.add(f"lens_live{suffix}_vs_off", per_round_ratios([r["sps"] for r in live], [r["sps"] for r in off]))
            self.add(f"lens_live{suffix}_updates_per_s", [r["lens_per_s"] for r in live],
                     note=f"live {what} figures the dock drew per second of training")
            self.add(f"lens_off{suffix}_steps_per_s", [r["sps"] for r in off])
            self.add(f"lens_live{suffix}_steps_per_s", [r["sps"] for r in live])

    def all(self) -> list[Figure]:
        groups: list[tuple[str, Callable[[], None]]] = [
            ("training, quiet", lambda: self.training(loaded=False)), ("lateness", self.lateness),
            ("start-up", self.startup), ("minilm", self.minilm), ("plot", self.plot), ("edits", self.edits),
            ("family, quiet", lambda: self.family(loaded=False)), ("decoders", self.decoders), ("lens", self.lens)]
        for label, measure in groups:
            timed(label, measure)
        if self.wanted("gui_vs_bare_loaded", "frames_per_s_loaded", "family_tiny_loaded_s"):
            with Neighbour():
                timed("training, one core busy", lambda: self.training(loaded=True))
                timed("family, one core busy", lambda: self.family(loaded=True))
        return self.figures


def timed(label: str, measure: Callable[[], None]) -> None:
    started = time.perf_counter()
    measure()
    log(f"{label}: {time.perf_counter() - started:.0f} s, load average {load_average()}")


def self_check(rounds: int, part: str, args: list[str]) -> Figure:
    """The same side compared with itself, in two processes, as every ratio is measured: 1.00 must lie within
    the printed spread (min-max over the rounds)."""
    with Sides() as sides:
        found = interleave([sides.add(side("A", part, *args)), sides.add(side("B", part, *args))], rounds, log=log)
    key = next(iter(found["A"][0]))
    return Figure(f"self_check_{part}_a_vs_a", per_round_ratios([r[key] for r in found["A"]],
                                                                [r[key] for r in found["B"]]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Print every PEFT Studio speed figure with its spread and verdict.")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: one round, few steps; says it is not a measurement")
    parser.add_argument("--only", metavar="NAMES", help="comma list: measure the figures whose names contain one")
    parser.add_argument("--list", action="store_true", help="print the figure names and their goals, measure nothing")
    parser.add_argument("--self-check", nargs="?", const="bare", choices=["bare", "spin"],
                        help="compare a side with itself in two processes (the bare loop, or `spin`: pure Python, "
                             "seconds): must print 1.00 within its spread")
    parser.add_argument("--rounds", type=int, default=12, help="measured rounds of --self-check (default 12)")
    parser.add_argument("--serve", nargs="+", help=argparse.SUPPRESS)  # internal: a side, in a child
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve(args.serve[0], args.serve[1:])
        return 0
    if args.list:
        for figure, goal in FIGURES.items():
            print(f"{figure}: {goal}")
        return 0
    started = time.perf_counter()
    log("machine at start:", machine())
    if args.self_check:
        figure = self_check(args.rounds, args.self_check, ["1", "100", "2.0"] if args.self_check == "bare"
                            else ["300000"])
        inside = figure.low <= 1.0 <= figure.high
        print(figure.line() + f" -> 1.00 {'within' if inside else 'OUTSIDE'} the range", flush=True)
        code = 0 if inside else 1
    else:
        if args.quick:
            print("# --quick: a smoke run (one round, few steps): NOT a measurement; figures are not judged",
                  flush=True)
        Run(args.quick, [s.strip() for s in args.only.split(",")] if args.only else None).all()
        code = 0
    log("machine at end:", machine())
    log(f"took {time.perf_counter() - started:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
