"""Every speed figure of PEFT Studio, measured side by side in one run; one `name: value` line each.

    python benchmarks/run.py            # the full run: best of 3 rounds (several minutes)
    python benchmarks/run.py --quick    # CI-sized: one round, fewer steps (meant for < 2 min when quiet)
    python benchmarks/run.py --list     # the figure names and their goals

Each measurement runs in a fresh process (torch's per-thread state from one must not slow
another), `rounds` times, interleaved, keeping the best (the least disturbed, as `timeit`
advises); details go to stderr, figures to stdout. Goals (issue 11) are in FIGURES.

The bare loop, the reference for `gui_vs_bare` and `core_vs_bare`, is the plainest PyTorch loop on
the same model (tiny + intents + LoRA, full batch) at every thread count the machine offers, with
the OpenMP wait policy both unset and PASSIVE: the best of those is what the machine can do.
"Loaded" figures are measured while another process (`while True: pass`) keeps one core busy;
the benchmark starts and stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]  # the bench modules, and this checkout's peft_studio

from peft_studio.core.runs.threads import usable_cores  # noqa: E402 - torch-free; sets the app's wait policy

CORES = usable_cores()
POLICIES = ("", "PASSIVE")  # "" = OpenMP's default (set but empty: peft_studio's default does not apply)

# name -> goal, as issue 11 states it (printed by --list; RESULTS.md quotes them)
FIGURES = {
    "gui_vs_bare": ">= 0.95",
    "gui_vs_bare_loaded": ">= 0.90",
    "core_vs_bare": ">= 0.97",
    "ui_lateness_p99_ms": "<= 16",
    "ui_lateness_max_ms": "<= 50",
    "frames_per_s": "30 with a spare core, never below 10",
    "frames_per_s_loaded": "never below 10",
    "startup_ratio": "<= 1.3",
    "minilm_lora_vs_peft": "<= 0.9",
    "qlora_bytes_ratio": "<= 0.15",
    "plot_append_ms_1m": "GUI stays responsive",
    "minilm_steps_per_s": "(batch 16, 2 threads)",
    "click_count_llama70b_ms": "< 150 (issue 21: a click on a 70B base to the new count, as a user clicks)",
}
# context for the figures above: the rates and times the ratios come from
DETAILS = ("bare_steps_per_s", "bare_steps_per_s_loaded", "gui_steps_per_s", "gui_steps_per_s_loaded",
           "gui_threads", "gui_threads_loaded", "core_steps_per_s", "startup_s", "import_floor_s",
           "click_rebuilt_llama70b_ms")


# ---- parts: each runs in its own process and prints one JSON line ---------------------------------
def part_bare(threads: int, steps: int) -> dict:
    import bench_window_training

    return {"sps": bench_window_training.bare_loop_steps_per_second(threads, steps)}


def part_bares(steps: int) -> dict:
    """--quick: the bare loop at every thread count in one process (one start-up instead of several)."""
    import bench_window_training

    return {str(threads): bench_window_training.bare_loop_steps_per_second(threads, steps)
            for threads in thread_counts()}


def thread_counts() -> list[int]:
    return sorted({n for n in (1, 2, 4, CORES) if n <= CORES})


def part_window(steps: int) -> dict:
    import bench_window_training

    rate, frames, threads = bench_window_training.window_steps_per_second(steps)
    return {"sps": rate, "fps": frames, "threads": threads}


def part_core(steps: int) -> dict:
    """The headless trainer as `peft-studio train` runs it: the core's generator, torch's default
    threads (the CLI keeps a fixed count: a count changed mid-run changes the last bits of a loss)."""
    import torch
    from bench_window_training import SETUP

    from peft_studio.core.data import load_builtin
    from peft_studio.core.model.experiment import Experiment
    from peft_studio.core.runs.train import TrainSettings, train

    experiment = Experiment(SETUP, load_builtin("intents"))
    for warm in (True, False):  # 10 warm-up steps, as the bare loop
        settings = TrainSettings(steps=10 if warm else steps, eval_every=10, track_grads=False)
        started = time.perf_counter()
        for _ in train(experiment, settings):
            pass
    return {"sps": steps / (time.perf_counter() - started), "threads": torch.get_num_threads()}


def part_lateness(seconds: float) -> dict:
    """A 5 ms timer on the GUI thread while the window trains: how late each period ends."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer

    from peft_studio.gui.app import make_app
    from peft_studio.gui.window.main_window import MainWindow

    app = make_app([])
    window = MainWindow()
    window.show()
    window.controller.set_training(steps=1_000_000, eval_every=10)
    window.runner.play_pause()
    while window.runner.step < 20:  # warm-up joined, probing begun
        app.processEvents(QEventLoop.ProcessEventsFlag.WaitForMoreEvents, 50)
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
    window.runner.stop_and_wait()  # close() no longer waits for the worker: end the run first
    window.close()
    periods = sorted(lateness[1:])
    return {"p99": periods[min(len(periods) - 1, int(0.99 * len(periods)))], "max": periods[-1],
            "ticks": len(periods)}


def part_minilm(rounds: int, steps: int) -> dict:
    """MiniLM: trainer steps/s at batch 16; studio LoRA vs PEFT LoRA step time; NF4 bytes ratio."""
    import bench_minilm_lora
    import torch
    from bench_minilm_lora import BATCH, THREADS

    from peft_studio.core.data import load_builtin
    from peft_studio.core.model.experiment import Experiment, Setup

    torch.set_num_threads(THREADS)
    bench_minilm_lora.STEPS = steps
    trainer = max(bench_minilm_lora.trainer_steps_per_second("minilm") for _ in range(rounds))
    studio_step, peft_step = _lora_vs_peft(rounds, BATCH, steps)
    census = Experiment(Setup("minilm", "qlora", {}, seed=0), load_builtin("sentiment")).census()
    assert census.quantization is not None
    return {"trainer_sps": trainer, "studio_step_s": studio_step, "peft_step_s": peft_step,
            "qlora_ratio": census.quantization.ratio}


def _lora_vs_peft(rounds: int, batch: int, steps: int = 20, warm: int = 3) -> tuple[float, float]:
    """Seconds per step, best of `rounds` interleaved: the studio's LoRA MiniLM and PEFT's LoRA on
    transformers' BertModel (r=8, alpha 16, query+value, mean pool + Linear head, Adam), same batches.
    BertModel's dropout is off: the studio's encoder has none, so both do the same arithmetic."""
    import peft
    import torch
    import transformers
    from torch.nn import functional as F

    from peft_studio.core.bases.pretrained import minilm_folder
    from peft_studio.core.data import load_builtin
    from peft_studio.core.model.experiment import Experiment, Setup

    data = load_builtin("sentiment")
    studio = Experiment(Setup("minilm", "lora", {"r": 8, "alpha": 16.0, "targets": "q,v"}, seed=0), data)
    bert = transformers.BertModel.from_pretrained(str(minilm_folder()), hidden_dropout_prob=0.0,
                                                  attention_probs_dropout_prob=0.0)
    wrapped = peft.get_peft_model(bert, peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                        target_modules=["query", "value"]))
    head = torch.nn.Linear(384, data.num_labels)
    generator = torch.Generator().manual_seed(0)
    count = len(studio.train_labels)
    batches = [torch.randperm(count, generator=generator)[:batch] for _ in range(warm + steps)]

    def studio_loss(index: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(studio.model(studio.train_ids[index], studio.train_mask[index]),
                               studio.train_labels[index])

    def peft_loss(index: torch.Tensor) -> torch.Tensor:
        mask = studio.train_mask[index]
        hidden = wrapped(input_ids=studio.train_ids[index], attention_mask=mask.long()).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return F.cross_entropy(head((hidden * weights).sum(1) / weights.sum(1)), studio.train_labels[index])

    def time_step(loss_of, parameters) -> float:
        optimizer = torch.optim.Adam(parameters, lr=1e-3)
        for number, index in enumerate(batches):
            if number == warm:
                started = time.perf_counter()
            loss = loss_of(index)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return (time.perf_counter() - started) / steps

    studio.model.train()
    wrapped.train()
    peft_params = [p for p in wrapped.parameters() if p.requires_grad] + list(head.parameters())
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(time_step(studio_loss, studio.model.trainable_parameters()))
        theirs.append(time_step(peft_loss, peft_params))
    return min(ours), min(theirs)


def part_plot(points: int, frames: int = 20, per_frame: int = 30) -> dict:
    """Milliseconds to append one frame's steps and repaint the live plots holding `points` points."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
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
    times = []
    step = points
    for _ in range(frames):
        started = time.perf_counter()
        for _ in range(per_frame):
            plots.add({"step": step, "loss": 0.5, "accuracy": 0.6, "val_loss": None, "val_accuracy": None})
            step += 1
        plots.refresh()
        plots.repaint()  # synchronous paint of the plots and their children
        app.processEvents()
        times.append(time.perf_counter() - started)
    return {"ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000, "points": plots.point_count()}


def part_click(rounds: int) -> dict:
    """Llama-3-70B: a mouse click on an insertion point to the new count (and to the rebuilt diagram)."""
    import bench_click

    return bench_click.click_to_count(rounds)


PARTS = {"bare": part_bare, "bares": part_bares, "window": part_window, "core": part_core, "lateness": part_lateness,
         "minilm": part_minilm, "plot": part_plot, "click": part_click}


# ---- the parent: runs the parts in fresh processes -----------------------------------------------
def child_env(policy: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen" if not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))
                   else env.get("QT_QPA_PLATFORM", ""))
    env.pop("OMP_WAIT_POLICY", None)  # torch's default unless a part asks for one
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_part(name: str, *args: object, policy: str | None = None, timeout: float = 600) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--part", name, *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, env=child_env(policy), timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"part {name} {args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


class Neighbour:
    """A busy process on one core (the last), as a browser or a video call would be."""

    def __enter__(self) -> Neighbour:
        pin = None
        if hasattr(os, "sched_setaffinity"):
            def pin() -> None:
                os.sched_setaffinity(0, {CORES - 1})
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=pin)
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.kill()
        self.process.wait()


def measure_training(rounds: int, steps: int, loaded: bool, quick: bool = False) -> dict[str, list]:
    """Bare loops (every thread count, both wait policies), the window and (quiet) the core trainer."""
    found: dict[str, list] = {}
    for _ in range(rounds):
        for policy in POLICIES:
            if quick:
                for threads, rate in run_part("bares", steps, policy=policy).items():
                    found.setdefault(f"bare{threads}{policy or 'default'}", []).append(rate)
                continue
            for threads in thread_counts():
                found.setdefault(f"bare{threads}{policy or 'default'}", []).append(
                    run_part("bare", threads, steps, policy=policy)["sps"])
        found.setdefault("window", []).append(run_part("window", steps))
        if not loaded:
            found.setdefault("core", []).append(run_part("core", steps))
    return found


def measure_startup(rounds: int) -> tuple[float, float]:
    """Seconds from process start to the first painted window, and to torch+QtWidgets+pyqtgraph imported."""
    app_script = ("import sys, time\nfrom peft_studio.gui import app\n"
                  "def painted(window):\n    print(time.time(), flush=True)\n    window.close()\n"
                  "sys.exit(app.main(on_painted=painted))\n")
    floor_script = ("import time\nimport torch\nfrom PySide6 import QtWidgets\nimport pyqtgraph\n"
                    "print(time.time(), flush=True)\n")
    starts, floors = [], []
    env = child_env()
    env.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
    for _ in range(rounds):
        for script, found in ((floor_script, floors), (app_script, starts)):
            started = time.time()
            result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                                    timeout=120)
            if result.returncode != 0:
                raise RuntimeError(f"start-up child failed:\n{result.stderr[-3000:]}")
            found.append(float(result.stdout.split()[0]) - started)
    return min(starts), min(floors)


def best_bare(found: dict[str, list]) -> tuple[float, str]:
    rates = {key: max(values) for key, values in found.items() if key.startswith("bare")}
    key = max(rates, key=rates.__getitem__)
    return rates[key], key


def main(quick: bool) -> dict[str, float]:
    rounds, steps = (1, 200) if quick else (3, 800)
    figures: dict[str, float] = {}

    quiet = measure_training(rounds, steps, loaded=False, quick=quick)
    with Neighbour():
        loaded = measure_training(rounds, steps, loaded=True, quick=quick)
        if not quick:
            lateness_loaded = run_part("lateness", 5.0)
            log("ui lateness while loaded (p99, max ms)", round(lateness_loaded["p99"], 1),
                round(lateness_loaded["max"], 1))
    lateness = run_part("lateness", 2.0 if quick else 5.0)
    for label, found in (("quiet", quiet), ("loaded", loaded)):
        log(label, {key: [round(v["sps"] if isinstance(v, dict) else v, 1) for v in values]
                    for key, values in found.items()})
    bare, bare_key = best_bare(quiet)
    bare_loaded, bare_loaded_key = best_bare(loaded)
    window = max(quiet["window"], key=lambda v: v["sps"])
    window_loaded = max(loaded["window"], key=lambda v: v["sps"])
    core = max(quiet["core"], key=lambda v: v["sps"])
    figures["gui_vs_bare"] = window["sps"] / bare
    figures["gui_vs_bare_loaded"] = window_loaded["sps"] / bare_loaded
    figures["core_vs_bare"] = core["sps"] / bare
    figures["ui_lateness_p99_ms"] = lateness["p99"]
    figures["ui_lateness_max_ms"] = lateness["max"]
    figures["frames_per_s"] = statistics.median(v["fps"] for v in quiet["window"])
    figures["frames_per_s_loaded"] = statistics.median(v["fps"] for v in loaded["window"])

    start, floor = measure_startup(2 if quick else 5)
    figures["startup_ratio"] = start / floor

    minilm = run_part("minilm", *((1, 5) if quick else (3, 30)))
    figures["minilm_lora_vs_peft"] = minilm["studio_step_s"] / minilm["peft_step_s"]
    figures["qlora_bytes_ratio"] = minilm["qlora_ratio"]
    plot = run_part("plot", 1_000_000)
    figures["plot_append_ms_1m"] = plot["ms"]
    log("plot append+repaint at 1M points: max ms", round(plot["max_ms"], 1))
    figures["minilm_steps_per_s"] = minilm["trainer_sps"]
    click = run_part("click", 3 if quick else 7)
    figures["click_count_llama70b_ms"] = click["count_ms"]

    figures.update({"bare_steps_per_s": bare, "bare_steps_per_s_loaded": bare_loaded,
                    "gui_steps_per_s": window["sps"], "gui_steps_per_s_loaded": window_loaded["sps"],
                    "gui_threads": window["threads"], "gui_threads_loaded": window_loaded["threads"],
                    "core_steps_per_s": core["sps"], "startup_s": start, "import_floor_s": floor,
                    "click_rebuilt_llama70b_ms": click["rebuilt_ms"]})
    log("best bare loop (threads, wait policy)", bare_key, "loaded:", bare_loaded_key)
    log("studio / PEFT LoRA MiniLM step ms", round(minilm["studio_step_s"] * 1000, 1),
        round(minilm["peft_step_s"] * 1000, 1))
    return figures


def machine() -> str:
    """nproc, the CPU model and the load average: what RESULTS.md records beside the figures."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return f"{CORES} cores, {model}, load average {load}"


def log(*parts: object) -> None:
    print("#", *parts, file=sys.stderr, flush=True)


def format_figure(name: str, value: float | None) -> str:
    if value is None:
        return f"{name}: n/a"
    if "threads" in name:
        return f"{name}: {int(value)}"
    return f"{name}: {value:.3f}" if abs(value) < 10 else f"{name}: {value:.1f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Print every PEFT Studio speed figure, one `name: value` a line.")
    parser.add_argument("--quick", action="store_true", help="a CI-sized run: one round, fewer steps")
    parser.add_argument("--list", action="store_true", help="print the figure names and their goals, measure nothing")
    parser.add_argument("--part", nargs="+", help=argparse.SUPPRESS)  # internal: one measurement, in a child
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    if args.part:
        import peft_studio  # noqa: F401 - first, as in the app: its OpenMP wait policy precedes torch

        name, *values = args.part
        print(json.dumps(PARTS[name](*(float(v) if "." in v else int(v) for v in values))))
    elif args.list:
        for figure, goal in FIGURES.items():
            print(f"{figure}: {goal}")
    else:
        started = time.perf_counter()
        log("machine at start:", machine())
        for figure, value in main(args.quick).items():
            print(format_figure(figure, value), flush=True)
        log("machine at end:", machine())
        log(f"took {time.perf_counter() - started:.0f} s")
