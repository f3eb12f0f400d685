"""`peft-studio`: no arguments opens the studio window; train | inspect | methods run headless."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from .core.bases import BASES, default_dataset, train_defaults
from .core.data import TextDataset, builtin_names, load_builtin, load_dataset_file
from .core.errors import ConfigError, PeftStudioError
from .core.logs import configure_logging, log_file, report_unexpected
from .core.methods import METHODS, method_names


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag or value is one `error: ...` line and exit 2, not a usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def finite_float(text: str) -> float:
    """A float flag: NaN and infinities are refused here, with their own message."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if len(text) > 24:
            raise argparse.ArgumentTypeError(f"a {len(text)}-character number is out of range [{low}, {high}]")
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range [{low}, {high}]")
        return value

    return parse


MAX_SEED = 2**63 - 1


@dataclass
class MethodFlag:
    """One CLI flag generated from the config fields of every registered method that has it."""

    field: str
    kind: type
    helps: dict[str, str]  # method name -> that method's help for the field

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")

    def help(self) -> str:
        by_text: dict[str, list[str]] = {}
        for method, text in self.helps.items():
            by_text.setdefault(text, []).append(method)
        if len(by_text) == 1:
            return f"{next(iter(by_text))} ({', '.join(self.helps)})"
        return "; ".join(f"{', '.join(methods)}: {text}" for text, methods in by_text.items())


def method_flags() -> list[MethodFlag]:
    """The union of every registered method's config fields, in registry order (the one list)."""
    flags: dict[str, MethodFlag] = {}
    for name, method in METHODS.items():
        for f in dataclasses.fields(method.config_cls):
            kind = _field_kind(f)
            flag = flags.setdefault(f.name, MethodFlag(f.name, kind, {}))
            flag.helps[name] = f.metadata.get("help", "")
    return list(flags.values())


def _field_kind(f: dataclasses.Field) -> type:
    default = f.default
    for kind in (bool, int, float):
        if isinstance(default, kind):
            return kind
    return str


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    bases = "; ".join(f"{entry.name} ({entry.summary})" for entry in BASES.values())
    parser.add_argument("--base", default="tiny", help=f"{bases}; or a checkpoint folder")
    parser.add_argument("--method", default="lora", choices=method_names())
    for flag in method_flags():
        if flag.kind is bool:
            parser.add_argument(flag.flag, action="store_true", default=None, help=flag.help())
        else:
            kind = {int: bounded_int(-(2**31), 2**31), float: finite_float}.get(flag.kind, str)
            parser.add_argument(flag.flag, type=kind, default=None, help=flag.help())
    parser.add_argument("--device", default="cpu", help="cpu, or cuda when present")
    parser.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=0)
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--dataset", choices=builtin_names(), help="a built-in dataset")
    data.add_argument("--data", metavar="FILE", help="a CSV, TSV, JSONL or JSON file")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--setup", metavar="FILE",
                        help="a setup saved by the window (File > Save setup): its base, method, options, dataset, "
                             "seed and training settings; --steps, --lr, --batch-size and --optimizer still override")
    parser.add_argument("--import-peft", metavar="FOLDER",
                        help="start from a Hugging Face PEFT adapter folder (LoRA, IA3, prompt tuning): its method "
                             "and settings replace --method and the method flags")


def _add_memory_arguments(parser: argparse.ArgumentParser) -> None:
    from .core.memory.at_scale import DEVICES_GB, OPTIMIZERS, WEIGHT_DTYPES

    memory = parser.add_argument_group("memory at scale (core/memory/at_scale.py)")
    memory.add_argument("--memory", action="store_true", help="print the training memory ledger and the fit line")
    memory.add_argument("--weights", choices=WEIGHT_DTYPES, default="bf16", help="frozen weights' dtype")
    memory.add_argument("--optimizer", choices=list(OPTIMIZERS), default="adamw")
    memory.add_argument("--batch", type=bounded_int(1, 1_000_000), default=1)
    memory.add_argument("--seq-len", type=bounded_int(1, 10_000_000), default=512)
    memory.add_argument("--checkpointing", action="store_true", help="gradient checkpointing")
    memory.add_argument("--device-gb", type=int, choices=DEVICES_GB, default=24)


def _memory(args: argparse.Namespace, experiment: Any, census: Any) -> tuple[Any, Any] | None:
    """The ledger when --memory or any memory flag was typed (a bad combination is a ConfigError)."""
    flags = {"--memory", "--weights", "--optimizer", "--batch", "--seq-len", "--checkpointing", "--device-gb"}
    if not flags & getattr(args, "given", set()):
        return None
    from .core.memory.at_scale import ledger, plan_for

    plan = plan_for(experiment.shape_change(), weights=args.weights, optimizer=args.optimizer, batch=args.batch,
                    seq_len=args.seq_len, checkpointing=args.checkpointing)
    return plan, ledger(census, experiment.base, plan)


def _add_lens_arguments(parser: argparse.ArgumentParser) -> None:
    lens = parser.add_argument_group("lens: what the trained part did (core/lenses)")
    lens.add_argument("--lens", action="store_true",
                      help="print the method's lens (ΔW spectra, gains, soft tokens' nearest words, bottleneck, "
                           "forgetting) instead of the census; with --import-peft, of an adapter trained elsewhere")
    lens.add_argument("--sentence", metavar="TEXT", help="the sentence a lens runs on (default: the first text)")


def _print_lens(args: argparse.Namespace, experiment: Any) -> int:
    from .core.lenses.report import lens_lines, lens_report

    if experiment.base.on_meta_device:
        raise ConfigError(f"--lens: base {experiment.base.name!r} is an architecture without weights: nothing has "
                          "trained to look at")
    figures = lens_report(experiment, args.sentence)
    if args.json:
        print(json.dumps({"method": experiment.method.name, "lens": [f.to_dict() for f in figures]}, indent=1))
        return 0
    print(f"lens: {experiment.method.title} on {experiment.base.describe()}")
    print("\n".join(lens_lines(figures)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="peft-studio", description=__doc__)
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    train = commands.add_parser("train", help="train a method and print the loss")
    _add_model_arguments(train)
    train.add_argument("--steps", type=bounded_int(1, 10_000_000), default=None, help="default: the base's")
    train.add_argument("--lr", type=finite_float, default=None, help="default: the base's")
    train.add_argument("--batch-size", type=bounded_int(0, 10_000_000), default=None,
                       help="0: full batch (default: the base's)")
    train.add_argument("--optimizer", default="adam", choices=["adam", "adamw"])
    train.add_argument("--log-every", type=bounded_int(1, 10_000_000), default=50)
    train.add_argument("--save-adapter", metavar="PATH")
    train.add_argument("--export-peft", metavar="FOLDER",
                       help="after training, write a Hugging Face PEFT adapter folder (+ head.safetensors)")
    inspect = commands.add_parser("inspect", help="the census: every tensor, who owns it, what trains")
    _add_model_arguments(inspect)
    inspect.add_argument("--json", action="store_true")
    _add_memory_arguments(inspect)
    _add_lens_arguments(inspect)
    commands.add_parser("methods", help="each method and where it puts its trainable part")
    compare = commands.add_parser("compare", help="train every method the base supports and print the table "
                                    "(an architecture without weights: counts and memory, no training)")
    compare.add_argument("--base", default="tiny", help=f"{', '.join(BASES)} or a checkpoint folder")
    compare.add_argument("--dataset", choices=builtin_names(), default="intents")
    compare.add_argument("--steps", type=bounded_int(1, 10_000_000), default=100)
    compare.add_argument("--methods", help="comma list (default: the whole family)")
    compare.add_argument("--lr", type=finite_float, default=1e-2)
    compare.add_argument("--batch-size", type=bounded_int(0, 10_000_000), default=0, help="0: full batch")
    compare.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=0)
    compare.add_argument("--device", default="cpu")
    compare.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    compare.add_argument("--runs-dir", metavar="DIR", help="where the runs are saved (default: the user data folder)")
    predict = commands.add_parser("predict", help="predict with one named adapter of a set on one base")
    predict.add_argument("--adapters", required=True, metavar="FILES",
                         help="comma list of adapter files (.safetensors) made for the same base")
    predict.add_argument("--use", metavar="NAME", help="the adapter to predict with (default: the first)")
    predict.add_argument("--list", action="store_true", help="list the adapters with their bytes beside the base's")
    predict.add_argument("texts", nargs="*", metavar="TEXT")
    _add_recipe_parser(commands)
    shot = commands.add_parser("screenshot", help="render the window for real (training included) to a PNG")
    shot.add_argument("out", metavar="OUT.png")
    shot.add_argument("--size", default="1600x1000", help="window size WIDTHxHEIGHT (default 1600x1000)")
    shot.add_argument("--presentation", action="store_true", help="presentation mode (F5): projector sizes")
    shot.add_argument("--method", default=None, help="the method to show (default: the window's)")
    shot.add_argument("--base", default=None, help="the frozen base (default: the window's)")
    shot.add_argument("--steps", type=bounded_int(0, 100_000), default=60, help="steps to train first (default 60)")
    verbose = "also log to stderr, and print the traceback of an unexpected error (the log file has it either way)"
    for command in (parser, *commands.choices.values()):
        command.add_argument("-v", "--verbose", action="store_true", default=False, help=verbose)
    return parser


def _add_recipe_parser(commands: Any) -> None:
    recipe = commands.add_parser("recipe", help="write a runnable transformers + peft + accelerate project that "
                                                "trains the setup's method on the real model")
    recipe.add_argument("--setup", required=True, metavar="FILE", help="a setup saved by the window")
    recipe.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder")
    recipe.add_argument("--base", default=None,
                        help="instead of the setup's base: a shipped architecture "
                             f"({', '.join(n for n, e in BASES.items() if not e.uses_dataset_vocabulary)}), "
                             "PATH/config.json, or a checkpoint folder")
    recipe.add_argument("--method", default=None, choices=method_names(),
                        help="instead of the setup's method (its options are then dropped; give the method flags)")
    for flag in method_flags():
        if flag.kind is bool:
            recipe.add_argument(flag.flag, action="store_true", default=None, help=flag.help())
        else:
            kind = {int: bounded_int(-(2**31), 2**31), float: finite_float}.get(flag.kind, str)
            recipe.add_argument(flag.flag, type=kind, default=None, help=flag.help())
    recipe.add_argument("--force", action="store_true", help="write into a folder that is not empty")


def cmd_recipe(args: argparse.Namespace) -> int:
    from .core.interop.recipe import recipe_from_setup_file

    options = {f.field: getattr(args, f.field) for f in method_flags() if getattr(args, f.field) is not None}
    folder, plan = recipe_from_setup_file(args.setup, args.out, base=args.base, method=args.method,
                                          options=options, force=args.force)
    expected = plan.expected
    print(f"wrote {folder}: {plan.setup.method} on {plan.model_id or plan.setup.base}")
    print(f"trainable params = {expected['studio']['trainable']} (method {expected['studio']['method_trainable']}, "
          f"head {expected['studio']['head_trainable']}); PEFT: adapter {expected['peft']['adapter_trainable']}, "
          f"head {expected['peft']['head_trainable']}")
    print(f"run: cd {folder} && accelerate launch --config_file accelerate/1gpu.yaml train.py"
          + ("" if plan.model_id else " --model ID_OR_FOLDER"))
    return 0


def _dataset(args: argparse.Namespace) -> TextDataset:
    if args.data:
        return load_dataset_file(args.data, args.text_column, args.label_column, seed=args.seed)
    if args.dataset:
        return load_builtin(args.dataset)
    return load_builtin(default_dataset(args.base))


# With --setup the file decides these; giving one as well would be silently ignored, so it is an error.
def _setup_decides() -> tuple[str, ...]:
    return ("--base", "--method", *(f.flag for f in method_flags()), "--seed", "--dataset", "--data",
            "--text-column", "--label-column", "--import-peft")


TRAINING_FLAGS = {"--steps": "steps", "--lr": "lr", "--batch-size": "batch_size", "--optimizer": "optimizer"}


def _from_setup_file(args: argparse.Namespace):
    """The experiment and training settings of `--setup`, with the training flags given on top."""
    from dataclasses import replace

    from .core.files.setup_file import load_setup
    from .core.model.experiment import Experiment

    clash = [flag for flag in _setup_decides() if flag in args.given]
    if clash:
        raise PeftStudioError(f"--setup already sets the model, the data and the seed; drop {', '.join(clash)}")
    setup, dataset, settings = load_setup(args.setup)
    overrides = {field: getattr(args, field) for flag, field in TRAINING_FLAGS.items()
                 if flag in args.given and getattr(args, field) is not None}
    experiment = Experiment(setup, dataset)
    experiment.to(args.device)
    return experiment, replace(settings, **overrides)


def _experiment(args: argparse.Namespace):
    from .core.model.experiment import Experiment, Setup

    if args.setup:
        return _from_setup_file(args)[0]

    options = {flag.field: getattr(args, flag.field) for flag in method_flags()}
    dataset = _dataset(args)
    if args.import_peft:
        from .core.interop.hf_peft import import_peft

        experiment = import_peft(Setup(args.base, seed=args.seed), args.import_peft, dataset)
    else:
        experiment = Experiment(Setup(args.base, args.method, options, args.seed), dataset)
    experiment.to(args.device)
    return experiment


def _print_totals(census) -> None:
    print(f"total params = {census.total}")
    print(f"trainable params = {census.trainable}")


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .core.files.adapter_file import check_adapter_writable, save_adapter
    from .core.runs.train import TrainSettings, train

    if args.setup:
        experiment, settings = _from_setup_file(args)
    else:
        experiment = _experiment(args)
        defaults = train_defaults(experiment.setup.base)
        settings = TrainSettings(steps=_given(args.steps, defaults.steps), lr=_given(args.lr, defaults.lr),
                                 batch_size=_given(args.batch_size, defaults.batch_size),
                                 optimizer=args.optimizer, seed=args.seed)
    settings = replace(settings, eval_every=args.log_every, track_grads=False)
    if args.export_peft:
        from .core.interop.hf_peft import check_peft_export

        check_peft_export(experiment, args.export_peft)  # refuse before training, not after it
    if args.save_adapter:
        check_adapter_writable(args.save_adapter)  # a long run is never lost to an unwritable path
    _print_totals(experiment.census())
    acc = "next_token_acc" if experiment.next_token else "acc"  # the task's accuracy, named as it is
    for event in train(experiment, settings):
        if event.step % args.log_every == 0 or event.last and event.val_accuracy is not None:
            line = f"step={event.step:03d} loss={event.loss:.4f} {acc}={event.accuracy:.2f}"
            if event.val_accuracy is not None:
                line += f" val_loss={event.val_loss:.4f} val_{acc}={event.val_accuracy:.2f}"
            print(line, flush=True)
    dataset = experiment.dataset
    texts = list(dataset.val_texts or dataset.train_texts)[:12]
    if experiment.next_token:
        from .core.model.next_token import print_next_words

        print_next_words(experiment, texts)
    else:
        width = max(len(t) for t in texts)
        for text, label in zip(texts, experiment.predict_labels(texts), strict=True):
            print(f"{text:{width}s} -> {label}")
    if args.save_adapter:
        print(f"saved adapter to {save_adapter(experiment, args.save_adapter)}", file=sys.stderr)
    if args.export_peft:
        from .core.interop.hf_peft import export_peft

        print(f"saved PEFT adapter to {export_peft(experiment, args.export_peft)}", file=sys.stderr)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    experiment = _experiment(args)
    if args.lens:
        return _print_lens(args, experiment)
    census = experiment.census()
    memory = _memory(args, experiment, census)
    if args.json:
        from .core.memory.at_scale import ledger_json
        from .core.model.tensor_bytes import census_json

        data = census_json(census, experiment.base)
        if memory:
            data["memory"] = ledger_json(memory[1], memory[0], args.device_gb)
        print(json.dumps(data, indent=1))
        return 0
    print(f"base: {experiment.base.describe()}   method: {experiment.method.title}   "
          f"dataset: {experiment.dataset.name}")
    widths = (max(len(r.name) for r in census.rows), max(len(r.site) for r in census.rows))
    print(f"{'tensor':{widths[0]}}  {'site':{widths[1]}}  {'owner':6}  {'shape':>12}  {'numel':>10}  "
          f"{'dtype':7}  {'bytes':>10}  trainable")
    for r in census.rows:
        shape = "x".join(map(str, r.shape))
        print(f"{r.name:{widths[0]}}  {r.site:{widths[1]}}  {r.owner:6}  {shape:>12}  {r.numel:>10,}  "
              f"{r.dtype:7}  {r.bytes:>10,}  {'yes' if r.trainable else 'no (frozen)'}")
    _print_totals(census)
    print(f"trainable % = {census.trainable_percent:.4f}%")
    from .core.model.tensor_bytes import census_json

    sizes = census_json(census, experiment.base)
    print("bytes if stored as: " + ", ".join(f"{d} {sizes[f'bytes_{d}']:,}" for d in ("fp32", "bf16", "nf4"))
          + (" (meta device: shapes only, no weights)" if experiment.base.on_meta_device else ""))
    if census.quantization:
        q = census.quantization
        print(f"quantized base: {q.tensors} Linear weights in NF4 = {q.stored_bytes:,} bytes "
              f"(fp32: {q.fp32_bytes:,} bytes, {q.ratio:.3f}x); quantization error max |W - deq(W)| = "
              f"{q.max_abs_error:.4g}, relative RMS = {q.relative_rms:.4f}")
    print(f"method formula: {experiment.method.formula_text(experiment.config, experiment.base)}")
    for note in experiment.shape_notes():
        print(f"shape: {note}")
    if memory:
        from .core.memory.at_scale import ledger_text

        print("memory at scale (one training step on one device):")
        for line in ledger_text(memory[1], args.device_gb):
            print(f"  {line}")
    return 0


def cmd_methods() -> int:
    width = max(len(name) for name in METHODS)
    for name, method in METHODS.items():
        print(f"{name:{width}}  {method.card.where}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .core.bases import is_architecture
    from .core.runs.compare import compare_headless, parse_methods
    from .core.runs.run_store import RunStore
    from .core.runs.train import TrainSettings

    if args.csv:
        from .core.errors import OutputError
        from .core.files.safe_io import check_writable

        check_writable(args.csv, OutputError)  # before the family trains, so no run is lost to a bad path
    if is_architecture(args.base):  # shapes only: where each method goes, how many, and memory to train
        from .core.memory.at_scale import MemoryPlan
        from .core.runs.placement_compare import compare_placements, placement_table

        plan = MemoryPlan()
        rows = list(compare_placements(args.base, load_builtin(args.dataset), parse_methods(args.methods), plan,
                                       args.seed))
        table = placement_table(rows, plan)
        if args.csv:
            from .core.runs.placement_compare import write_placement_csv

            write_placement_csv(rows, args.csv)
        print(table)
        return 0
    settings = TrainSettings(steps=args.steps, lr=args.lr, batch_size=args.batch_size, seed=args.seed)
    _, table = compare_headless(args.base, load_builtin(args.dataset), settings, args.seed, parse_methods(args.methods),
                                RunStore(args.runs_dir), args.csv, args.device,
                                progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(table)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .core.adapters.adapter_set import AdapterSet, describe_set

    adapters = AdapterSet.from_files([p for p in args.adapters.split(",") if p])
    if args.use:
        adapters.activate(args.use)
    if args.list or not args.texts:
        print("\n".join(describe_set(adapters)))
    for text, probs in zip(args.texts, adapters.predict(args.texts).tolist() if args.texts else [], strict=True):
        best = max(range(len(probs)), key=probs.__getitem__)
        print(f"{text} -> {adapters.get(adapters.active).dataset.label_names[best]} ({probs[best]:.2f})")
    return 0


def start_gui() -> int:
    try:
        from .gui.app import main as gui_main
    except ImportError as exc:
        print(f"error: the studio window cannot start ({exc}); use `peft-studio train` or `inspect`",
              file=sys.stderr)
        return 2
    return gui_main()


def cmd_screenshot(args: argparse.Namespace) -> int:
    """Delegates to the GUI's screenshot module (imported here only: the other commands never load Qt)."""
    from .gui.screenshot import parse_size, take

    print(take(args.out, steps=args.steps, size=parse_size(args.size), method=args.method, base=args.base,
               presentation=args.presentation))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad flag, already reported on one line (2)
        return exc.code if isinstance(exc.code, int) else 2
    args.given = {token.split("=", 1)[0] for token in argv if token.startswith("--")}  # flags typed, not defaults
    configure_logging(verbose=args.verbose)
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "inspect":
            return cmd_inspect(args)
        if args.command == "methods":
            return cmd_methods()
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "predict":
            return cmd_predict(args)
        if args.command == "recipe":
            return cmd_recipe(args)
        if args.command == "screenshot":
            return cmd_screenshot(args)
        return start_gui()
    except PeftStudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug, not a user mistake: one line here, the traceback in the log
        message = report_unexpected(exc, f"peft-studio {args.command or ''}".strip())
        hint = "" if args.verbose else f"; the traceback is in {log_file()} (or rerun with --verbose)"
        print(f"error: unexpected {message} - a bug in PEFT Studio{hint}", file=sys.stderr)
        return 1


def main_entry() -> None:
    """Console-script entry point: unencodable text is escaped, a closed stdout (`| head -1`) ends quietly."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away: point stdout at nothing so the interpreter's final flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main_entry()
