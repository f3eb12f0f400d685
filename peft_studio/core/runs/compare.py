"""Run the family: every method the base supports, same data, seed and step budget; records and the table."""

from __future__ import annotations

import math
import secrets
import statistics
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ..data import TextDataset
from ..errors import OutputError, PeftStudioError
from ..files.adapter_file import save_adapter
from ..lenses.run_summary import OLD_RUN_NOTE, run_lens
from ..memory.ledger import estimate_ledger, measure_ledger
from ..methods import METHODS
from ..methods.fitting import fitting_options
from ..methods.mergeable import mergeable_layers
from ..model.experiment import Experiment, Setup
from ..model.next_token import NEXT_TOKEN
from .probe import step_probe
from .run_store import Curves, RunRecord, RunStore
from .threads import ThreadChoice
from .torch_threads import set_torch_threads
from .train import StepEvent, TrainControl, TrainSettings, evaluate, train

LATENCY_BATCH = 32  # texts per timed forward pass
TARGET_ACCURACY = 0.95


# ---- one run -------------------------------------------------------------------------------------------
def _latency_inputs(experiment: Experiment) -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask = (experiment.val_ids, experiment.val_mask) if experiment.val_ids is not None else \
        (experiment.train_ids, experiment.train_mask)
    return ids[:LATENCY_BATCH], mask[:LATENCY_BATCH]


class _Timed:
    """Eval-mode forwards of one model on the latency batch, so that two models can be timed in turn."""

    def __init__(self, experiment: Experiment) -> None:
        self.model = experiment.model
        self.ids, self.mask = _latency_inputs(experiment)
        self.best = math.inf

    @torch.no_grad()
    def once(self) -> None:
        if self.ids.is_cuda:
            torch.cuda.synchronize(self.ids.device)
        started = time.perf_counter()
        self.model(self.ids, self.mask)
        if self.ids.is_cuda:
            torch.cuda.synchronize(self.ids.device)
        self.best = min(self.best, time.perf_counter() - started)


def interleaved_latency_ms(*experiments: Experiment, repeats: int = 30, budget_s: float = 2.0,
                           should_stop: Callable[[], bool] = lambda: False) -> list[float]:
    """Milliseconds of one eval forward on the latency batch for each experiment, timed in turn (ABAB...) and
    the best of the repeats kept: alternating cancels drift in machine load, the minimum is the least
    disturbed by whatever else runs. `should_stop` ends the repeats early (a stopped family run)."""
    timed = [_Timed(e) for e in experiments]
    modes = [t.model.training for t in timed]
    for t in timed:
        t.model.eval()
    try:
        for t in timed:  # warm-up
            t.once()
            t.best = math.inf
        started = time.perf_counter()
        for _ in range(repeats):
            for t in timed:
                t.once()
            if time.perf_counter() - started > budget_s or should_stop():
                break
    finally:
        for t, mode in zip(timed, modes, strict=True):
            t.model.train(mode)
    return [1000.0 * t.best for t in timed]


def measure_latency(experiment: Experiment, bare: Experiment,
                    should_stop: Callable[[], bool] = lambda: False) -> tuple[float, float, float | None]:
    """(this model, the bare base + head, this model with its weight updates merged or None), in ms per forward."""
    model_ms, bare_ms = interleaved_latency_ms(experiment, bare, should_stop=should_stop)
    layers = mergeable_layers(experiment.model)
    if not layers or should_stop():
        return model_ms, bare_ms, None
    for layer in layers:
        layer.merge()  # e.g. W = W0 + (alpha/r) B A; unmerge restores W0 exactly
    try:
        merged_ms, bare_again = interleaved_latency_ms(experiment, bare, should_stop=should_stop)
    finally:
        for layer in layers:
            layer.unmerge()
    return model_ms, min(bare_ms, bare_again), merged_ms


def bare_experiment(setup: Setup, dataset: TextDataset, device: str = "cpu") -> Experiment:
    """The frozen base + head alone (head-only adds nothing to the base): the latency reference. The next-token
    task has no head of its own and refuses head-only; full fine-tuning adds no module either, so its
    forward pass is the bare base's."""
    bare_method = "full" if dataset.task == NEXT_TOKEN else "head-only"
    bare = Experiment(replace(setup, method=bare_method, options={}), dataset)
    bare.to(device)
    return bare


def adapter_file_bytes(experiment: Experiment) -> int:
    """Save the adapter as the studio saves it and measure the file."""
    with tempfile.TemporaryDirectory() as folder:
        return save_adapter(experiment, Path(folder) / "adapter.safetensors").stat().st_size


def new_run_id(method: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{method}-{secrets.token_hex(3)}"


def steps_to_target(curves: Curves, target: float = TARGET_ACCURACY) -> int | None:
    """Optimizer updates done before the batch accuracy first reached the target (accuracy is taken before
    the step's update, so the first step's value shows the untrained model)."""
    first = curves.step[0] if curves.step else 0
    for step, accuracy in zip(curves.step, curves.accuracy, strict=True):
        if accuracy >= target:
            return step - first
    return None


def make_record(experiment: Experiment, settings: TrainSettings, curves: Curves, steps_per_second: float,
                bare: Experiment | None = None, should_stop: Callable[[], bool] = lambda: False) -> RunRecord:
    """Measure a trained experiment and put everything a comparison needs into one record.

    `bare` is the latency reference (bare_experiment); built here when not given. `should_stop` cuts the
    timing short (a stopped family run: the record is dropped anyway).
    """
    bare = bare or bare_experiment(experiment.setup, experiment.dataset, str(experiment.device))
    latency, base_latency, merged = measure_latency(experiment, bare, should_stop)
    census = experiment.census()
    train_loss, train_acc = evaluate(experiment, experiment.train_ids, experiment.train_mask,
                                     experiment.train_labels)
    val_loss = val_acc = None
    if experiment.val_ids is not None:
        val_loss, val_acc = evaluate(experiment, experiment.val_ids, experiment.val_mask, experiment.val_labels)
    optimizer = settings.optimizer
    head = census.by_owner("head")
    setup = experiment.setup
    lens = run_lens(experiment)  # from the trained parts, here on the run's own thread
    return RunRecord(
        run_id=new_run_id(setup.method), created=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        base=setup.base, method=setup.method, options=experiment.config.to_dict(),
        dataset=experiment.dataset.name, seed=setup.seed, settings=asdict(settings),
        where=experiment.method.card.where, steps_done=len(curves),
        final_train_loss=train_loss, final_train_accuracy=train_acc,
        final_val_loss=val_loss, final_val_accuracy=val_acc,
        steps_to_95=steps_to_target(curves), steps_per_second=steps_per_second,
        trainable_params=census.trainable, base_params=census.by_owner("base"), head_params=head,
        adapter_bytes=adapter_file_bytes(experiment),
        memory=measure_ledger(experiment, settings.batch_size, optimizer, settings.lr),
        memory_estimate=estimate_ledger(experiment, settings.batch_size, optimizer=optimizer),
        latency_ms=latency, base_latency_ms=base_latency, merged_latency_ms=merged,
        latency_batch=len(_latency_inputs(experiment)[0]), curves=curves,
        lens_effective_rank=lens.effective_rank, lens_relative_norm=lens.relative_norm,
        forgetting=lens.forgetting, forgetting_measure=lens.forgetting_measure, lens_note=lens.note,
    )


# ---- the family ----------------------------------------------------------------------------------------
@dataclass
class FamilyEvent:
    """What the family run reports: kind is 'start', 'step', 'skip', 'done' or 'stopped'."""

    kind: str
    method: str
    index: int  # position of the method in the family, from 0
    total: int
    step: StepEvent | None = None
    record: RunRecord | None = None
    reason: str = ""  # why a method was skipped
    threads: int = 0  # the torch threads every run of this family trains with (on 'start')


def run_family(base: str, dataset: TextDataset, settings: TrainSettings, seed: int = 0,
               methods: Sequence[str] | None = None, options: dict[str, dict[str, Any]] | None = None,
               control: TrainControl | None = None, store: RunStore | None = None,
               device: str = "cpu", base_options: dict[str, Any] | None = None,
               threads: ThreadChoice | int | None = None) -> Iterator[FamilyEvent]:
    """Train each method in turn (default: every registered method) and yield progress as it goes.

    A method is in the family when its Experiment builds on this base; the others are reported as 'skip'
    with the reason. `control` pauses or stops between optimizer steps; a stopped run is not recorded.
    Records are saved to `store` as each run finishes. `threads` is the torch thread count of every run:
    a number, a ThreadChoice (measured once, before the first run: with a core busy elsewhere two threads
    ran 5x slower than one), or None to keep the caller's. One count for the whole family keeps its
    steps/s comparable and its numbers reproducible; the caller's count is restored at the end.
    """
    previous, caller = torch.get_num_threads(), threading.get_ident()
    try:
        yield from _run_family(base, dataset, settings, seed, methods, options, control, store, device,
                               base_options, threads)
    finally:
        if threading.get_ident() == caller:  # OpenMP's count is per thread: a stopped run may be closed elsewhere
            set_torch_threads(previous)


def _run_family(base: str, dataset: TextDataset, settings: TrainSettings, seed: int,
                methods: Sequence[str] | None, options: dict[str, dict[str, Any]] | None,
                control: TrainControl | None, store: RunStore | None, device: str,
                base_options: dict[str, Any] | None, threads: ThreadChoice | int | None) -> Iterator[FamilyEvent]:
    names = list(methods) if methods else list(METHODS)
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise PeftStudioError(f"unknown method {unknown[0]!r} (choose from {', '.join(METHODS)})")
    settings.check()
    options = options or {}
    bare: Experiment | None = None
    for index, name in enumerate(names):
        setup = Setup(base, name, dict(options.get(name, {})), seed, dict(base_options or {}))
        try:
            try:
                experiment = Experiment(setup, dataset)
            except PeftStudioError:
                # PEFT's defaults are sized for real models (FourierFT's 1000 coefficients): settings that fit
                fitted = fitting_options(name, bare.base) if bare is not None and name not in options else None
                if not fitted:
                    raise
                setup = replace(setup, options=fitted)
                experiment = Experiment(setup, dataset)
            experiment.to(device)
        except PeftStudioError as exc:
            yield FamilyEvent("skip", name, index, len(names), reason=str(exc))
            continue
        except ImportError as exc:  # e.g. QLoRA where bitsandbytes is not installed
            yield FamilyEvent("skip", name, index, len(names), reason=f"needs a missing package ({exc})")
            continue
        if bare is None:
            bare = bare_experiment(setup, dataset, device)
            if isinstance(threads, ThreadChoice) and experiment.device.type == "cpu":
                threads = threads.measure(step_probe(experiment, settings))
            if isinstance(threads, int):
                set_torch_threads(threads)
        yield FamilyEvent("start", name, index, len(names), threads=torch.get_num_threads())
        curves, last, durations = Curves(), None, []
        steps = train(experiment, replace(settings, track_grads=False), control)
        while True:
            started = time.perf_counter()
            event = next(steps, None)
            if event is None:
                break
            if event.val_loss is None:  # a step that also evaluated would count the evaluation as training
                durations.append(time.perf_counter() - started)
            curves.append(event.step, event.loss, event.accuracy, event.val_loss, event.val_accuracy)
            last = event
            yield FamilyEvent("step", name, index, len(names), step=event)
        stopped = (lambda: control.stopped) if control is not None else (lambda: False)
        if last is None or not last.last or stopped():
            yield FamilyEvent("stopped", name, index, len(names))
            return
        rate = 1.0 / statistics.median(durations) if durations else last.steps_per_second
        record = make_record(experiment, settings, curves, rate, bare, stopped)
        if stopped():  # a stop during the measurements: the run is not recorded
            yield FamilyEvent("stopped", name, index, len(names))
            return
        if store is not None:
            store.save(record)
        yield FamilyEvent("done", name, index, len(names), record=record)


def family_records(events: Iterator[FamilyEvent], on_event: Callable[[FamilyEvent], None] | None = None
                   ) -> list[RunRecord]:
    """Drain a family run and keep the records (headless use)."""
    records = []
    for event in events:
        if on_event is not None:
            on_event(event)
        if event.record is not None:
            records.append(event.record)
    return records


# ---- the table -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    key: str
    header: str
    value: Callable[[RunRecord], Any]
    better: str | None  # "low", "high" or None (not ranked)
    text: Callable[[Any], str]
    # A timed column is noisy: its best is only marked when it beats the runner-up by more than this much
    # (absolute, and relative to the larger magnitude); counts and bytes are exact (0, 0).
    noise: tuple[float, float] = (0.0, 0.0)
    numeric: bool = False  # a number even when not ranked (aligned right)
    tip: str = ""  # what the column means (its header's tooltip)

    @property
    def right_aligned(self) -> bool:
        return self.better is not None or self.numeric


LATENCY_NOISE_MS = 0.1  # best-of-N forward timings on a shared CPU move by about this much between runs
TIMING_NOISE = 0.10  # and by about a tenth, relative


def _int(v: Any) -> str:
    return "-" if v is None else f"{v:,}"


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v:.3g}%"


def _acc(v: Any) -> str:
    return "-" if v is None else f"{v:.2f}"


def _ms(v: Any) -> str:
    if v is None:
        return "-"
    return "≈0" if abs(v) < LATENCY_NOISE_MS else f"{v:+.3f}"  # below the timing noise: no sign to read


def _rate(v: Any) -> str:
    return "-" if v is None else f"{v:.1f}"


def _lens(v: Any) -> str:
    return "—" if v is None else f"{v:.3g}"


def human_bytes(count: int | None) -> str:
    if count is None:
        return "-"
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            return f"{int(value):,} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{count} B"


COLUMNS: tuple[Column, ...] = (
    Column("method", "method", lambda r: r.method, None, str),
    Column("where", "where the trainable part sits", lambda r: r.where, None, str),
    Column("trainable_params", "trainable", lambda r: r.trainable_params, "low", _int),
    Column("trainable_percent", "% of base", lambda r: r.trainable_percent, "low", _pct),
    Column("adapter_bytes", "adapter file", lambda r: r.adapter_bytes, "low", human_bytes),
    Column("training_memory", "training memory", lambda r: r.training_memory, "low", human_bytes),
    Column("activations", "activations", lambda r: r.memory.activations if r.memory else None, "low",
           human_bytes),
    Column("train_accuracy", "train acc", lambda r: r.final_train_accuracy, "high", _acc),
    Column("val_accuracy", "val acc", lambda r: r.final_val_accuracy, "high", _acc),
    Column("steps_to_95", "steps to 95%", lambda r: r.steps_to_95, "low", _int),
    Column("steps_per_second", "steps/s", lambda r: r.steps_per_second, "high", _rate, (0.0, TIMING_NOISE)),
    Column("added_latency_ms", "+latency ms", lambda r: r.added_latency_ms, "low", _ms,
           (LATENCY_NOISE_MS, TIMING_NOISE)),
    Column("added_latency_merged_ms", "+latency merged ms", lambda r: r.added_latency_merged_ms, "low", _ms,
           (LATENCY_NOISE_MS, TIMING_NOISE)),
    # The lens columns are not ranked: a method that learned nothing also forgets nothing and has no ΔW.
    Column("effective_rank", "ΔW eff. rank", lambda r: r.lens_effective_rank, None, _lens, numeric=True,
           tip="effective rank of ΔW (exp of the entropy of its normalised singular values), mean over the "
               "adapted weight matrices"),
    Column("relative_norm", "‖ΔW‖/‖W0‖", lambda r: r.lens_relative_norm, None, _lens, numeric=True,
           tip="how big the update is against the frozen weight (Frobenius norms), mean over the adapted matrices"),
    Column("forgetting", "forgetting", lambda r: r.forgetting, None, _lens, numeric=True,
           tip="how far the adapted model's outputs on general text moved from the base's (0: not at all)"),
)
LENS_KEYS = ("effective_rank", "relative_norm", "forgetting")
# The default table: what fits 100 columns (where, memory and latency are in --wide and the CSV)
NARROW = ("method", "trainable_params", "trainable_percent", "adapter_bytes", "train_accuracy", "val_accuracy",
          "steps_to_95", "steps_per_second")
TABLE_WIDTH = 100
DETERMINISTIC = ("method", "trainable_params", "trainable_percent", "adapter_bytes", "training_memory",
                 "activations", "train_accuracy", "val_accuracy", "steps_to_95", *LENS_KEYS)  # same seed -> same value


def lens_missing(record: RunRecord, key: str) -> str:
    """Why a lens cell of this run is empty ("" when it is not)."""
    value = next(c for c in COLUMNS if c.key == key).value(record)
    if value is not None:
        return ""
    if record.forgetting is None:
        return OLD_RUN_NOTE
    return record.lens_note or f"{key} was not computed for this run"


def best_rows(records: Sequence[RunRecord], column: Column) -> set[int]:
    """Indices of the rows holding the best value of a ranked column (ties all count). A noisy (timed) column
    marks a best only when it beats every other row by more than the column's noise: a difference the next
    run could reverse is not a winner (a -0.048 ms "added latency" is the timer, not the method)."""
    if column.better is None:
        return set()
    values = [(i, column.value(r)) for i, r in enumerate(records)]
    values = [(i, v) for i, v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return set()
    pick = min if column.better == "low" else max
    best = pick(v for _, v in values)
    winners = {i for i, v in values if v == best}
    absolute, relative = column.noise
    if absolute or relative:
        others = [v for i, v in values if i not in winners]
        if not others:
            return set()  # one run (or all equal): nothing is beaten
        margin = max(absolute, relative * max(abs(best), *(abs(v) for v in others)))
        if any(abs(v - best) <= margin for v in others):
            return set()
    return winners


def table_cells(records: Sequence[RunRecord]) -> list[list[str]]:
    """Each record's row as display text, in COLUMNS order."""
    return [[c.text(c.value(r)) for c in COLUMNS] for r in records]


@dataclass(frozen=True)
class TwentyTasks:
    """The seed's exercise 2: many tasks on one base, as adapters or as full fine-tuned copies."""

    tasks: int
    method: str
    adapter_bytes: int  # one adapter
    base_bytes: int  # the shared frozen base, stored once
    full_copy_bytes: int  # one fully fine-tuned model

    @property
    def with_adapters(self) -> int:
        return self.tasks * self.adapter_bytes + self.base_bytes

    @property
    def with_full_copies(self) -> int:
        return self.tasks * self.full_copy_bytes

    def text(self) -> str:
        ratio = self.with_full_copies / self.with_adapters if self.with_adapters else math.inf
        return (f"{self.tasks} tasks with {self.method}: {self.tasks} adapters x {human_bytes(self.adapter_bytes)} "
                f"+ one shared base {human_bytes(self.base_bytes)} = {human_bytes(self.with_adapters)}; "
                f"{self.tasks} fully fine-tuned copies x {human_bytes(self.full_copy_bytes)} = "
                f"{human_bytes(self.with_full_copies)} ({ratio:.1f}x more)")


def twenty_tasks(record: RunRecord, tasks: int = 20) -> TwentyTasks:
    return TwentyTasks(tasks, record.method, record.adapter_bytes, 4 * record.base_params, record.full_copy_bytes)


def format_table(records: Sequence[RunRecord], current: str | None = None, tasks: int = 20,
                 wide: bool = False) -> str:
    """A plain-text table, best value per column marked with *, and the many-tasks footer.

    By default the NARROW columns, footer wrapped: it fits TABLE_WIDTH characters; `wide`: every column."""
    if not records:
        return "no runs"
    columns = COLUMNS if wide else tuple(c for c in COLUMNS if c.key in NARROW)
    cells = [[c.text(c.value(r)) for c in columns] for r in records]
    for j, column in enumerate(columns):
        for i in best_rows(records, column):
            cells[i][j] += " *"
    headers = [c.header for c in columns]
    widths = [max(len(h), *(len(row[j]) for row in cells)) for j, h in enumerate(headers)]
    left = {"method", "where"}
    lines = ["  ".join(h.ljust(w) if c.key in left else h.rjust(w) for h, w, c in zip(headers, widths, columns,
                                                                                   strict=True))]
    for row in cells:
        lines.append("  ".join(v.ljust(w) if c.key in left else v.rjust(w) for v, w, c in zip(row, widths, columns,
                                                                                            strict=True)))
    chosen = next((r for r in records if r.method == current), records[0])
    footer = [twenty_tasks(chosen, tasks).text()]
    if wide:
        footer.insert(0, "* best in its column. Latency: added ms over the bare base for one forward of "
                         f"{records[0].latency_batch} texts; merged: LoRA folded into W0. Lens: ΔW numbers are "
                         "means over the adapted matrices (— where the method has no ΔW); forgetting: "
                         f"{_forgetting_measures(records)}.")
    else:
        footer.insert(0, "* best in its column. --wide adds where each method sits, memory and latency; --csv "
                         "writes every number.")
        footer = [textwrap.fill(line, TABLE_WIDTH, subsequent_indent="  ") for line in footer]
    return "\n".join(lines + footer)


def _forgetting_measures(records: Sequence[RunRecord]) -> str:
    measures = list(dict.fromkeys(r.forgetting_measure for r in records if r.forgetting_measure))
    return " / ".join(measures) or "not recorded"


def write_csv(records: Sequence[RunRecord], path: str | Path) -> Path:
    """The table with raw numbers (bytes, ms, fractions), one row per run, plus run id, base and dataset."""
    from ..files.safe_io import write_csv_atomically

    keys = ["run_id", "base", "dataset", "seed", "steps_done"]
    rows = ([*(getattr(r, k) for k in keys), *("" if v is None else v for v in (c.value(r) for c in COLUMNS))]
            for r in records)
    return write_csv_atomically(path, [*keys, *(c.key for c in COLUMNS)], rows, OutputError)


def parse_methods(text: str | None) -> list[str] | None:
    """'lora, ia3' -> ['lora', 'ia3'] (checked against the registry); None: the whole family."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise PeftStudioError("--methods is empty: give a comma list such as lora,ia3")
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise PeftStudioError(f"unknown method {unknown[0]!r} in --methods (choose from {', '.join(METHODS)})")
    return names


def compare_headless(base: str, dataset: TextDataset, settings: TrainSettings, seed: int = 0,
                     methods: Sequence[str] | None = None, store: RunStore | None = None,
                     csv_path: str | Path | None = None, device: str = "cpu",
                     progress: Callable[[str], None] | None = None, wide: bool = False,
                     on_event: Callable[[FamilyEvent], None] | None = None,
                     threads: ThreadChoice | int | None = None) -> tuple[list[RunRecord], str]:
    """What `peft-studio compare` does: run the family, save the runs, write the CSV; returns the table text."""
    said_threads = False

    def report(event: FamilyEvent) -> None:
        nonlocal said_threads
        if on_event is not None:
            on_event(event)
        if progress is None:
            return
        if event.kind == "start" and not said_threads:
            said_threads = True
            how = "measured" if isinstance(threads, ThreadChoice) else "given" if threads else "torch's default"
            progress(f"every run trains with {event.threads} torch thread{'s' * (event.threads != 1)} ({how})")
        elif event.kind == "skip":
            progress(f"{event.method}: skipped ({event.reason})")
        elif event.kind == "done" and event.record is not None:
            progress(f"{event.method}: {event.record.steps_done} steps, "
                     f"train acc {event.record.final_train_accuracy:.2f}")

    records = family_records(run_family(base, dataset, settings, seed, methods, store=store, device=device,
                                        threads=threads), on_event=report)
    if not records:
        raise PeftStudioError(f"no method of the family builds on base {base!r}")
    if csv_path is not None:
        write_csv(records, csv_path)
    current = "lora" if any(r.method == "lora" for r in records) else records[0].method
    return records, format_table(records, current=current, wide=wide)
