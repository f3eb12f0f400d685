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
from pathlib import Path
from typing import Any

from .cli_help import HelpFormatter, Parser, add_command, examples_epilog, wrap
from .cli_progress import StepBar
from .core.bases import BASES, default_dataset, is_architecture, train_defaults
from .core.data import TextDataset, builtin_names, load_builtin, load_dataset_file
from .core.errors import ConfigError, PeftStudioError
from .core.logs import configure_logging, log_file, report_unexpected
from .core.methods import METHODS, method_names


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


def thread_count(text: str) -> int | str:
    """--threads: "auto" (measured before the first run) or a whole number of torch threads, 1 to 1024."""
    return "auto" if text.strip().lower() == "auto" else bounded_int(1, 1024)(text)


MAX_SEED = 2**63 - 1


@dataclass
class MethodFlag:
    """One CLI flag generated from the config fields of every registered method that has it."""

    field: str
    kind: type
    helps: dict[str, str]  # method name -> that method's help for the field
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)  # method name -> its config's default

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")

    def help(self) -> str:
        """Each method's help (grouped when several say the same), then the defaults the help does not state."""
        by_text: dict[str, list[str]] = {}
        for method, text in self.helps.items():
            by_text.setdefault(text, []).append(method)
        if len(by_text) == 1:
            owners = "every method" if len(self.helps) == len(METHODS) else ", ".join(self.helps)
            text = f"{next(iter(by_text))} ({owners})"
        else:
            text = "; ".join(f"{', '.join(methods)}: {text}" for text, methods in by_text.items())
        return (text + self._defaults()).replace("%", "%%")  # argparse formats help with %

    def _defaults(self) -> str:
        by_value: dict[str, list[str]] = {}
        for method, value in self.defaults.items():
            if not (value is None or value is False or value == "") and "default" not in self.helps[method].lower():
                by_value.setdefault(str(value), []).append(method)
        if not by_value:
            return ""
        if len(by_value) == 1 and len(next(iter(by_value.values()))) == len(self.helps):
            return f" (default: {next(iter(by_value))})"
        return " (default: " + "; ".join(f"{value} for {', '.join(methods)}" for value, methods in by_value.items()) \
            + ")"


def method_flags() -> list[MethodFlag]:
    """The union of every registered method's config fields, in registry order (the one list)."""
    flags: dict[str, MethodFlag] = {}
    for name, method in METHODS.items():
        for f in dataclasses.fields(method.config_cls):
            kind = _field_kind(f)
            flag = flags.setdefault(f.name, MethodFlag(f.name, kind, {}))
            if flag.kind is not kind:  # e.g. init_weights: true/false for HRA, a name for HiRA: one text flag,
                flag.kind = str  # which each method's config reads as its own kind (make_config)
            flag.helps[name] = f.metadata.get("help", "")
            flag.defaults[name] = None if f.default is dataclasses.MISSING else f.default
    return list(flags.values())


def _add_method_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per config field of any registered method (a bool field is a --x / --no-x switch)."""
    group = parser.add_argument_group("method options (generated from the methods' configs; each applies to the "
                                      "methods named in its help)")
    for flag in method_flags():
        if flag.kind is bool:  # --x / --no-x: a switch that is on by default can be turned off too
            group.add_argument(flag.flag, action=argparse.BooleanOptionalAction, default=None, help=flag.help())
        else:
            kind = {int: bounded_int(-(2**31), 2**31 - 1), float: finite_float}.get(flag.kind, str)
            group.add_argument(flag.flag, type=kind, default=None, metavar=flag.field.upper(), help=flag.help())


def _field_kind(f: dataclasses.Field) -> type:
    default = f.default
    for kind in (bool, int, float):
        if isinstance(default, kind):
            return kind
    return str


def bases_help() -> str:
    """The --base help: the built-in bases, then the shipped architectures in one line, then folders."""
    built_in = [f"{entry.name} ({entry.summary})" for entry in BASES.values() if not is_architecture(entry.name)]
    shapes = [name for name in BASES if is_architecture(name)]
    return ("; ".join(built_in) + (f"; architectures on the meta device (shapes only, no weights): "
                                   f"{', '.join(shapes)}" if shapes else "")
            + "; or a checkpoint folder, or PATH/config.json")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", default="tiny", help=bases_help())
    parser.add_argument("--method", default="lora", choices=method_names(), metavar="METHOD",
                        help=f"the PEFT method: {', '.join(method_names())} (`peft-studio methods` says where each "
                             "puts its trainable part)")
    _add_method_flags(parser)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda when present")
    parser.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=0,
                        help="seeds the base, the method's parts, the head and the mini-batches")
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--dataset", choices=builtin_names(), metavar="NAME",
                      help=f"a built-in dataset: {', '.join(builtin_names())} (default: the base's; intents on most)")
    data.add_argument("--data", metavar="FILE", help="your own CSV, TSV, JSONL or JSON file of texts and labels (or "
                                                     "a .txt file of texts, one a line, for next-token)")
    parser.add_argument("--text-column", default="text", metavar="NAME", help="--data: the column holding the texts")
    parser.add_argument("--label-column", default="label", metavar="NAME",
                        help="--data: the column holding the labels")
    parser.add_argument("--task", choices=["classify", "next-token"], default=None,
                        help="what --data teaches: classify (its labels) or next-token (its texts, on a decoder); "
                             "default: next-token for a .txt file, else classify")
    parser.add_argument("--setup", metavar="FILE",
                        help="a setup file (File > Save setup…, or --save-setup), a lesson file (File > Save lesson…) "
                             "or a lesson's name (`peft-studio lessons`): its base, method, options, dataset, seed "
                             "and training settings; --steps, --lr, --batch-size and --optimizer still override, "
                             "and --data FILE names its data file (one outside the setup's folder must be named)")
    from .core.interop.hf_peft import accepted_formats

    parser.add_argument("--import-peft", metavar="FOLDER",
                        help="start from a Hugging Face PEFT adapter folder: its method and settings replace --method "
                             f"and the method flags. Accepted: {accepted_formats()}. What an import leaves out is "
                             "said on stderr (note: ...)")


def _add_memory_arguments(parser: argparse.ArgumentParser) -> None:
    from .core.memory.at_scale import ATTENTIONS, DEVICES_GB, OPTIMIZERS, WEIGHT_DTYPES

    memory = parser.add_argument_group("memory at scale (core/memory/at_scale.py)")
    memory.add_argument("--memory", action="store_true", help="print the training memory ledger and the fit line")
    memory.add_argument("--weights", choices=WEIGHT_DTYPES, default=None,
                        help="frozen weights' storage (default: as the method builds the base: nf4 under QLoRA, "
                             "else bf16)")
    memory.add_argument("--optimizer", choices=list(OPTIMIZERS), default="adamw",
                        help="the optimizer whose state is counted")
    memory.add_argument("--batch", type=bounded_int(1, 1_000_000), default=1, help="sequences per step")
    memory.add_argument("--seq-len", type=bounded_int(1, 10_000_000), default=512, help="tokens per sequence")
    memory.add_argument("--checkpointing", action="store_true", help="gradient checkpointing")
    memory.add_argument("--attention", choices=ATTENTIONS, default="sdpa",
                        help="transformers' attn_implementation the activations assume (default sdpa, as "
                             "transformers trains; eager keeps the L x L softmax; flash: flash-attention 2)")
    memory.add_argument("--device-gb", type=int, choices=DEVICES_GB, default=24,
                        help="the accelerator's memory for the fit line, in GB")


def _memory(args: argparse.Namespace, experiment: Any, census: Any) -> tuple[Any, Any] | None:
    """The ledger when --memory or any memory flag was typed (a bad combination is a ConfigError)."""
    flags = {"--memory", "--weights", "--optimizer", "--batch", "--seq-len", "--checkpointing", "--device-gb",
             "--attention"}
    if not flags & getattr(args, "given", set()):
        return None
    from .core.memory.at_scale import frozen_storage, ledger, plan_for

    weights = args.weights or frozen_storage(census, "bf16")  # one answer with compare and the Memory dock
    plan = plan_for(experiment.shape_change(), weights=weights, optimizer=args.optimizer, batch=args.batch,
                    seq_len=args.seq_len, checkpointing=args.checkpointing, attention=args.attention)
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


DESCRIPTION = ("See parameter-efficient fine-tuning. With no command, `peft-studio` opens the studio window (it needs "
               "a display); each command below runs headless on the same core. `peft-studio COMMAND --help` shows a "
               "command's flags, their defaults and examples.")

EXAMPLES = {
    "": ["peft-studio                       # the studio window",
         "peft-studio methods               # the PEFT family and where each method sits",
         "peft-studio lessons               # the shipped lessons and yours",
         "peft-studio train --setup lora    # train a lesson's setup here"],
    "train": ["peft-studio train                                 # LoRA on the tiny base, intents dataset",
              "peft-studio train --base seed-pooled --method adapter --bottleneck 4 --dataset seed-intents "
              "--steps 201 --lr 0.05 --seed 42 --log-every 50",
              "peft-studio train --method ia3 --data my.csv --text-column text --label-column label",
              "peft-studio train --method lora --r 8 --save-setup my-setup.json --save-adapter lora.safetensors",
              "peft-studio train --setup my-setup.json --steps 50   # a setup or lesson file; training flags override",
              "peft-studio train --setup word-order                 # a lesson by name (peft-studio lessons)",
              "peft-studio train --base minilm --method lora --export-peft out/   # needs peft-studio[minilm]"],
    "inspect": ["peft-studio inspect --base tiny --method lora --r 4 --targets q,v",
                "peft-studio inspect --base tiny --method adapter --bottleneck 4 --json",
                "peft-studio inspect --base llama-3-70b --method qlora --targets all-linear --r 16 --memory "
                "--weights nf4-dq --checkpointing --device-gb 24"],
    "methods": ["peft-studio methods",
                "peft-studio methods --family-map --base tiny --sort trainable   # every method's figures on a base",
                "peft-studio methods --family-map --base llama-3-70b   # an architecture: counts, no latency"],
    "lessons": ["peft-studio lessons",
                "peft-studio train --setup word-order --steps 100   # train a listed lesson here"],
    "compare": ["peft-studio compare --base tiny --dataset word-order --steps 100 --csv board.csv",
                "peft-studio compare --methods lora,adapter,head-only --steps 50 --wide",
                "peft-studio compare --base llama-3-70b     # an architecture: counts and memory, no training"],
    "predict": ["peft-studio train --method lora --save-adapter lora.safetensors",
                "peft-studio train --method ia3 --save-adapter ia3.safetensors",
                "peft-studio predict --adapters lora.safetensors,ia3.safetensors --use ia3 \"refund my order\"",
                "peft-studio predict --adapters lora.safetensors,ia3.safetensors --list"],
    "recipe": ["peft-studio train --method lora --steps 1 --save-setup my-setup.json",
               "peft-studio recipe --setup my-setup.json --out llama-lora --base llama-3-8b --targets all-linear "
               "--r 16",
               "peft-studio recipe --setup lora --out minilm-lora --base minilm   # a lesson's setup",
               "cd llama-lora && python train.py --config-only model_config.json --max-steps 2 --cpu   # smoke test"],
    "screenshot": ["peft-studio screenshot main.png",
                   "peft-studio screenshot slide.png --size 1280x720 --presentation --method adapter "
                   "--base seed-pooled --steps 200",
                   "peft-studio screenshot --family-map --base tiny map.png   # View > Family map, 1280x720",
                   "peft-studio screenshot --readme resources/screenshots   # every README picture"],
    "generate": ["peft-studio generate --base ~/models/SmolLM2-135M \"Once upon a time\"   # greedy, 20 new tokens",
                 "peft-studio generate --base ~/models/gpt2 --import-peft my-adapter --max-new-tokens 40 --json "
                 "\"The parcel\"",
                 "peft-studio generate --base ~/models/gpt2 --temperature 0.8 --top-k 40 --seed 1 \"Hello\""],
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="peft-studio", description=wrap(DESCRIPTION), epilog=examples_epilog(EXAMPLES[""]),
                    formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="command", parser_class=Parser, title="commands", metavar="COMMAND")
    train = add_command(commands, "train", "train a method and print the loss and accuracy",
                        "Train one method on one base and print the loss and accuracy as it goes (a progress bar "
                        "with steps/s and the time left on a terminal), then predictions for a few texts.",
                        EXAMPLES["train"])
    _add_model_arguments(train)
    train.add_argument("--steps", type=bounded_int(1, 10_000_000), default=None,
                       help="optimizer steps (default: the base's)")
    train.add_argument("--lr", type=finite_float, default=None, help="learning rate (default: the base's)")
    train.add_argument("--batch-size", type=bounded_int(0, 10_000_000), default=None,
                       help="0: full batch (default: the base's)")
    train.add_argument("--optimizer", default="adam", choices=["adam", "adamw"], help="the optimizer")
    train.add_argument("--gradient-checkpointing", action="store_true",
                       help="decoders: keep only each layer's input for backward and recompute the layer (less memory)")
    train.add_argument("--log-every", type=bounded_int(1, 10_000_000), default=50,
                       help="print a line every N steps (and evaluate on the validation split)")
    train.add_argument("--save-adapter", metavar="PATH",
                       help="after training, save the trained tensors and what rebuilds the base (.safetensors; "
                            "`peft-studio predict` and the window's Load adapter read it)")
    train.add_argument("--save-setup", metavar="FILE",
                       help="before training, save the setup (base, method, options, dataset, seed, training "
                            "settings; JSON, no weights) as the window's File > Save setup… does: for --setup, "
                            "`recipe --setup` and the window")
    train.add_argument("--export-peft", metavar="FOLDER",
                       help="after training, write a Hugging Face PEFT adapter folder (+ head.safetensors)")
    train.add_argument("--threads", type=thread_count, default="auto",
                       help="torch threads for the run: a number, or auto (measured before the first step; the "
                            "default). Fixed for the whole run")
    inspect = add_command(commands, "inspect", "the census: every tensor, who owns it, what trains",
                          "Build the model without training and print the census: every tensor with its site, owner, "
                          "shape, size and whether it trains, then the totals.", EXAMPLES["inspect"])
    _add_model_arguments(inspect)
    inspect.add_argument("--json", action="store_true", help="print the census as one JSON object")
    _add_memory_arguments(inspect)
    _add_lens_arguments(inspect)
    methods = add_command(commands, "methods", "list the PEFT methods and where each puts its trainable part",
                          "Print one line per registered method: its name (what --method takes) and where it puts its "
                          "trainable part in the model.", EXAMPLES["methods"])
    methods.add_argument("--peft-coverage", action="store_true",
                         help="each adapter type of the installed peft: exchanged, drawn only, not applicable (why) "
                              "or not yet")
    _add_family_map_arguments(methods)
    lessons = add_command(commands, "lessons", "list the shipped lessons and your own",
                          "Print the lessons PEFT Studio ships and the ones you saved (File > Save lesson… in the "
                          "window), with each one's base, method, dataset and file. A name works wherever a setup "
                          "file does (`train --setup NAME`, `recipe --setup NAME`); the window opens lessons from "
                          "Examples and File > Open lesson….", EXAMPLES["lessons"])
    lessons.add_argument("--user-dir", metavar="DIR",
                         help="where your lessons are (default: lessons/ in the user data folder, e.g. "
                              "~/.local/share/peft-studio/lessons)")
    _add_compare_parser(commands)
    predict = add_command(commands, "predict", "predict with one named adapter of a set on one base",
                          "Load adapter files saved for one base (train --save-adapter, or the window) and predict "
                          "with the one --use names; with no texts, list them.", EXAMPLES["predict"])
    predict.add_argument("--adapters", required=True, metavar="FILES",
                         help="comma list of adapter files (.safetensors) made for the same base")
    predict.add_argument("--use", metavar="NAME",
                         help="the adapter to predict with, by name (its file name without .safetensors; default: "
                              "the first)")
    predict.add_argument("--list", action="store_true", help="list the adapters with their bytes beside the base's")
    predict.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify")
    _add_recipe_parser(commands)
    _add_generate_parser(commands)
    _add_screenshot_parser(commands)
    verbose = "also log to stderr, and print the traceback of an unexpected error (the log file has it either way)"
    for command in (parser, *commands.choices.values()):
        command.add_argument("-v", "--verbose", action="store_true", default=False, help=verbose)
    return parser


def _add_family_map_arguments(methods: Any) -> None:
    from .core.runs.family_map import FIGURE_KEYS

    methods.add_argument("--family-map", action="store_true",
                         help="every method on --base, grouped as the seed's map groups them: trainable count and "
                              "share, adapter bytes, added inference latency (measured), mergeable, sites used; a "
                              "method that does not apply says why")
    methods.add_argument("--base", default=None, help=f"with --family-map: {', '.join(BASES)} or a checkpoint folder "
                                                      "(default: tiny)")
    methods.add_argument("--dataset", choices=builtin_names(), default=None, metavar="NAME",
                         help="with --family-map: the built-in dataset whose head and texts it uses (default: the "
                              "base's)")
    methods.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=0, help="with --family-map: the base's seed")
    methods.add_argument("--sort", choices=FIGURE_KEYS, default="registry", metavar="FIGURE",
                         help=f"with --family-map: order each group by {', '.join(FIGURE_KEYS)}")
    methods.add_argument("--descending", action="store_true", help="with --family-map: largest first")


def _add_compare_parser(commands: Any) -> None:
    compare = add_command(commands, "compare", "train every method the base supports and print one table",
                          "Train every method the base supports on the same data, seed and step budget (a progress "
                          "bar per method, k/N, on a terminal) and print one row per run. An architecture without "
                          "weights (llama-3-70b, ...) is placed instead: counts and memory, no training. The table "
                          "fits 100 columns; --wide adds the memory and latency columns, --csv writes every number.",
                          EXAMPLES["compare"])
    compare.add_argument("--base", default="tiny", help=f"{', '.join(BASES)} or a checkpoint folder")
    compare.add_argument("--dataset", choices=builtin_names(), default="intents", metavar="NAME",
                         help=f"a built-in dataset: {', '.join(builtin_names())}")
    compare.add_argument("--steps", type=bounded_int(1, 10_000_000), default=100, help="steps per method")
    compare.add_argument("--methods", help="comma list (default: the whole family)")
    compare.add_argument("--lr", type=finite_float, default=1e-2, help="learning rate, the same for every method")
    compare.add_argument("--batch-size", type=bounded_int(0, 10_000_000), default=0, help="0: full batch")
    compare.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=0, help="the same seed for every method")
    compare.add_argument("--device", default="cpu", help="cpu, or cuda when present")
    compare.add_argument("--wide", action="store_true",
                         help="every column (memory, activations, latency), wider than 100 characters")
    compare.add_argument("--csv", metavar="FILE", help="also write the table as CSV (every column, raw numbers)")
    compare.add_argument("--runs-dir", metavar="DIR", help="where the runs are saved (default: the user data folder)")
    compare.add_argument("--threads", type=thread_count, default="auto",
                         help="torch threads for every run of the family: a number, or auto (measured once before "
                              "the first run; the default)")


def _add_screenshot_parser(commands: Any) -> None:
    shot = add_command(commands, "screenshot", "render the window for real (training included) to a PNG",
                       "Build the studio window offscreen (no display needed), train, and save it as a PNG: for "
                       "slides and the README. --readme FOLDER writes every README picture (main window, Compare, "
                       "Adapters, Exercises, Memory at scale, a lesson in presentation mode).",
                       EXAMPLES["screenshot"])
    shot.add_argument("out", metavar="OUT.png", nargs="?", help="the picture to write (not with --readme)")
    shot.add_argument("--readme", metavar="FOLDER", help="write every README picture into FOLDER")
    shot.add_argument("--size", default="1600x1000", help="window size WIDTHxHEIGHT")
    shot.add_argument("--presentation", action="store_true", help="presentation mode (F5): projector sizes")
    shot.add_argument("--method", default=None, help="the method to show (default: the window's)")
    shot.add_argument("--base", default=None, help="the frozen base (default: the window's)")
    shot.add_argument("--steps", type=bounded_int(0, 100_000), default=60, help="steps to train first")
    shot.add_argument("--family-map", action="store_true",
                      help="the Family map (View > Family map) of --base instead of the window, at 1280x720 unless "
                           "--size says otherwise; no training")


def _add_recipe_parser(commands: Any) -> None:
    recipe = add_command(commands, "recipe", "write a transformers + peft + accelerate project for the real model",
                         "Write a runnable training project (train.py, the PEFT config, the data, accelerate "
                         "configs, the expected counts) that trains the setup's method on the real model. Methods "
                         "Hugging Face PEFT lacks are refused with the nearest PEFT method named.", EXAMPLES["recipe"])
    recipe.add_argument("--setup", required=True, metavar="FILE",
                        help="a setup file (File > Save setup…, or train --save-setup), a lesson file or a lesson's "
                             "name")
    recipe.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder")
    recipe.add_argument("--base", default=None,
                        help="instead of the setup's base: a shipped architecture "
                             f"({', '.join(n for n, e in BASES.items() if not e.uses_dataset_vocabulary)}), "
                             "PATH/config.json, or a checkpoint folder")
    recipe.add_argument("--method", default=None, choices=method_names(), metavar="METHOD",
                        help="instead of the setup's method (its options are then dropped; give the method flags)")
    _add_method_flags(recipe)
    recipe.add_argument("--data", metavar="FILE",
                        help="the setup's data file, named by you (a setup's data outside its folder is read only "
                             "when named here)")
    recipe.add_argument("--force", action="store_true", help="write into a folder that is not empty")


def _add_generate_parser(commands: Any) -> None:
    generate = add_command(commands, "generate", "continue a text with a decoder checkpoint (and an adapter)",
                           "Continue TEXT with a decoder checkpoint folder (Llama, Mistral, Qwen2, GPT-2), alone or "
                           "with a studio adapter file or a Hugging Face PEFT adapter folder, one token at a time "
                           "with a KV cache: greedy (transformers' argmax) unless --temperature is given; it stops at "
                           "the folder's end-of-text ids.", EXAMPLES["generate"])
    generate.add_argument("--base", required=True, help="a decoder checkpoint folder (Llama, Mistral, Qwen2, GPT-2)")
    adapter = generate.add_mutually_exclusive_group()
    adapter.add_argument("--import-peft", metavar="FOLDER", help="a Hugging Face PEFT adapter folder for this base")
    adapter.add_argument("--adapter", metavar="FILE", help="an adapter file saved by the studio (--save-adapter)")
    generate.add_argument("--max-new-tokens", type=bounded_int(1, 100_000), default=20, help="tokens to add")
    generate.add_argument("--temperature", type=finite_float, default=0.0, help="0: greedy; above 0: sample")
    generate.add_argument("--top-k", type=bounded_int(0, 10_000_000), default=0,
                          help="sample among the k most likely tokens (with --temperature; 0: all)")
    generate.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=0, help="the sampling seed")
    generate.add_argument("--json", action="store_true",
                          help="print one JSON object: prompt_ids, generated_ids (new ids only), text, ...")
    generate.add_argument("text", metavar="TEXT", help="the text to continue")


class TerminalProgress:
    """A progress bar on stderr for checkpoint loads that take more than a second (quiet before that)."""

    def __init__(self, what: str = "loading weights", after_s: float = 1.0) -> None:
        self.what, self.after_s, self.started, self.shown = what, after_s, None, False

    def __call__(self, fraction: float, text: str) -> None:
        import time

        if not sys.stderr.isatty():  # piped or redirected: only the result lines (as cli_progress's bars)
            return
        now = time.monotonic()
        if self.started is None or fraction == 0:  # a load begins
            self.started, self.shown = now, False
        if not self.shown and now - self.started < self.after_s:
            return
        self.shown = True
        filled = int(30 * fraction)
        end = "\n" if fraction >= 1 else ""
        print(f"\r{self.what} [{'#' * filled}{'.' * (30 - filled)}] {fraction:6.1%}", end=end, file=sys.stderr,
              flush=True)


def cmd_generate(args: argparse.Namespace) -> int:
    from .core.model.generate import GenerationSettings, model_for_generation, stream

    settings = GenerationSettings(args.max_new_tokens, args.temperature, args.top_k, args.seed)
    settings.check()
    model = model_for_generation(args.base, args.text, adapter=args.adapter, peft=args.import_peft, seed=args.seed)
    for note in model.notes:
        print(f"note: {note}", file=sys.stderr)
    for note in getattr(model.base, "load_notes", ()):
        print(f"note: {note}", file=sys.stderr)
    prompt_ids = model.encode(args.text)
    generated: list[int] = []
    shown = ""
    finished = False
    if not args.json:
        print(args.text, end="", flush=True)
    for step in stream(model.base, prompt_ids, settings, model.stop_ids):
        generated.append(step.token_id)
        finished = step.finished
        if not args.json:  # print what the new ids add to the decoded text (a token may complete a character)
            text = model.decode(generated)
            if text.startswith(shown):
                print(text[len(shown):], end="", flush=True)
                shown = text
    text = model.decode(generated)
    if args.json:
        print(json.dumps({"base": args.base, "adapter": model.label, "prompt": args.text, "prompt_ids": prompt_ids,
                          "generated_ids": generated, "text": text, "stopped": "eos" if finished else "max_new_tokens",
                          "settings": dataclasses.asdict(settings)}))
    else:
        print(text[len(shown):] if text.startswith(shown) else "")
    return 0


def cmd_recipe(args: argparse.Namespace) -> int:
    from .core.interop.recipe import recipe_from_setup_file

    options = {f.field: getattr(args, f.field) for f in method_flags() if getattr(args, f.field) is not None}
    folder, plan = recipe_from_setup_file(args.setup, args.out, base=args.base, method=args.method,
                                          options=options, force=args.force, data_file=args.data)
    expected = plan.expected
    print(f"wrote {folder}: {plan.setup.method} on {plan.model_id or plan.setup.base}")
    print(f"trainable params = {expected['studio']['trainable']} (method {expected['studio']['method_trainable']}, "
          f"head {expected['studio']['head_trainable']}); PEFT: adapter {expected['peft']['adapter_trainable']}, "
          f"head {expected['peft']['head_trainable']}")
    print(f"run: cd {folder} && accelerate launch --config_file accelerate_configs/1gpu.yaml train.py"
          + ("" if plan.model_id else " --model ID_OR_FOLDER"))
    return 0


def _dataset(args: argparse.Namespace) -> TextDataset:
    if args.data:
        task = args.task or ("next-token" if str(args.data).lower().endswith(".txt") else "classify")
        return load_dataset_file(args.data, args.text_column, args.label_column, seed=args.seed, task=task)
    if args.task:
        raise PeftStudioError("--task applies to a --data file (a built-in dataset has its own task)")
    if args.dataset:
        return load_builtin(args.dataset)
    return load_builtin(default_dataset(args.base))


# With --setup the file decides these; giving one as well would be silently ignored, so it is an error.
def _setup_decides() -> tuple[str, ...]:
    return ("--base", "--method", *(f.flag for f in method_flags()), "--seed", "--dataset",
            "--text-column", "--label-column", "--task", "--import-peft")


TRAINING_FLAGS = {"--steps": "steps", "--lr": "lr", "--batch-size": "batch_size", "--optimizer": "optimizer"}


def _from_setup_file(args: argparse.Namespace):
    """The experiment and training settings of `--setup`, with the training flags given on top."""
    from dataclasses import replace

    from .core.model.experiment import Experiment
    from .core.teaching.lesson import load_setup_or_lesson

    clash = [flag for flag in _setup_decides() if flag in args.given]
    if clash:
        raise PeftStudioError(f"--setup already sets the model, the data and the seed; drop {', '.join(clash)}")
    setup, dataset, settings = load_setup_or_lesson(args.setup, data_file=args.data)  # --data: named by the user
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
        for note in experiment.notes:  # never silent: every tensor left out, every setting read differently
            print(f"note: {note}", file=sys.stderr)
    else:
        experiment = Experiment(Setup(args.base, args.method, options, args.seed), dataset)
    experiment.to(args.device)
    return experiment


def _print_totals(census) -> None:
    print(f"total params = {census.total}")
    print(f"trainable params = {census.trainable}")


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def _set_threads(threads: int | str, experiment: Any, settings: Any) -> int:
    """The run's torch thread count, fixed for the run: measured (auto; with a core busy elsewhere two threads
    ran 10-20x slower than one on a 2-core machine) or given. Logged (see --verbose), never printed: the output
    stays the seed's, line for line."""

    from .core.logs import log
    from .core.runs.probe import choose_threads
    from .core.runs.threads import ThreadChoice
    from .core.runs.torch_threads import set_torch_threads

    if threads == "auto":
        count = choose_threads(ThreadChoice(), experiment, settings)
    else:
        count = int(threads)
        set_torch_threads(count)
    log.info("training with %d torch thread%s (%s)", count, "s" * (count != 1),
             "measured" if threads == "auto" else "given")
    return count


def _check_outputs(paths: dict[str, str | None], folders: dict[str, str | None] = {}) -> None:  # noqa: B006
    """Every output the command will write, checked before any work (an empty name, a folder where a file
    goes, a FIFO, a folder that cannot be made), so a long run is never lost at its end."""
    from .core.errors import OutputError
    from .core.files.safe_io import check_writable

    for flag, value in {**paths, **folders}.items():
        if value is None:
            continue
        if not value.strip():
            raise OutputError(f"{flag}: the path is empty; give a {'folder' if flag in folders else 'file'} name")
        try:
            check_writable(value, OutputError, folder=flag in folders)
        except OutputError as exc:
            raise OutputError(f"{flag} {exc}") from None


def cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .core.files.adapter_file import check_adapter_writable, save_adapter
    from .core.runs.train import TrainSettings, train

    _check_outputs({"--save-adapter": args.save_adapter}, {"--export-peft": args.export_peft})
    if args.setup:
        experiment, settings = _from_setup_file(args)
    else:
        experiment = _experiment(args)
        defaults = train_defaults(experiment.setup.base)
        settings = TrainSettings(steps=_given(args.steps, defaults.steps), lr=_given(args.lr, defaults.lr),
                                 batch_size=_given(args.batch_size, defaults.batch_size),
                                 optimizer=args.optimizer, seed=args.seed)
    settings = replace(settings, eval_every=args.log_every, track_grads=False,
                       gradient_checkpointing=args.gradient_checkpointing or settings.gradient_checkpointing)
    settings.check()  # lr and the rest refused before anything is printed or trained
    if args.save_setup:  # before training: the setup is what the flags said, whatever the run does
        from .core.files.setup_file import save_setup

        path = save_setup(args.save_setup, experiment.setup, experiment.dataset, settings)
        print(f"saved setup to {path}", file=sys.stderr)
    if args.export_peft is not None:
        from .core.interop.hf_peft import check_peft_export

        check_peft_export(experiment, args.export_peft)  # refuse before training, not after it
    if args.save_adapter is not None:
        check_adapter_writable(args.save_adapter)  # a long run is never lost to an unwritable path
    _print_totals(experiment.census())
    _set_threads(args.threads, experiment, settings)
    acc = "next_token_acc" if experiment.next_token else "acc"  # the task's accuracy, named as it is
    with StepBar(settings.steps, f"{experiment.setup.method} on {experiment.setup.base}") as bar:
        for event in train(experiment, settings):
            bar.advance_to(event.step + 1, event.loss)
            if event.step % args.log_every == 0 or event.last and event.val_accuracy is not None:
                line = f"step={event.step:03d} loss={event.loss:.4f} {acc}={event.accuracy:.2f}"
                if event.val_accuracy is not None:
                    line += f" val_loss={event.val_loss:.4f} val_{acc}={event.val_accuracy:.2f}"
                bar.write(line)
    dataset = experiment.dataset
    texts = list(dataset.val_texts or dataset.train_texts)[:12]
    if experiment.next_token:
        from .core.model.next_token import print_next_words

        print_next_words(experiment, texts)
    else:
        width = max(len(t) for t in texts)
        for text, label in zip(texts, experiment.predict_labels(texts), strict=True):
            print(f"{text:{width}s} -> {label}")
    if args.save_adapter is not None:
        print(f"saved adapter to {save_adapter(experiment, args.save_adapter)}", file=sys.stderr)
    if args.export_peft is not None:
        from .core.interop.hf_peft import export_note, export_peft

        print(f"saved PEFT adapter to {export_peft(experiment, args.export_peft)}", file=sys.stderr)
        if note := export_note(experiment):
            print(f"note: {note}", file=sys.stderr)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    experiment = _experiment(args)
    for note in getattr(experiment.base, "load_notes", ()):  # what the checkpoint's loading left out or found
        print(f"note: {note}", file=sys.stderr)
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
    # the totals again, last: on an LLM the tensor list above runs to hundreds of lines
    print(f"totals: {census.total:,} parameters, {census.trainable:,} trainable ({census.trainable_percent:.4f}%), "
          f"{census.total - census.trainable:,} frozen; {len(census.rows):,} tensors")
    return 0


def cmd_lessons(args: argparse.Namespace) -> int:
    from .core.teaching.lesson import lesson_catalogue, user_lessons_dir

    user_dir = Path(args.user_dir).expanduser() if args.user_dir else user_lessons_dir()
    entries = lesson_catalogue(user_dir)
    width = max((len(e.name) for e in entries), default=4)
    for shipped, heading in ((True, "shipped lessons"), (False, f"your lessons ({user_dir})")):
        group = [e for e in entries if e.shipped == shipped]
        print(f"{heading}:")
        if not group:
            print("  none yet: File > Save lesson… in the window saves one here" if not shipped else "  none")
        for entry in group:
            if entry.lesson is None:
                print(f"  {entry.name:{width}}  cannot be read: {entry.problem}")
                continue
            setup = entry.lesson.setup
            print(f"  {entry.name:{width}}  {entry.lesson.title}")
            print(f"  {'':{width}}  {setup.method} on {setup.base}, dataset {entry.lesson.dataset.name}, "
                  f"{entry.lesson.settings.steps} steps; {entry.path}")
    print("open one in the window: Examples menu or File > Open lesson…; train one here: "
          "peft-studio train --setup NAME")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    map_only = sorted({"--base", "--dataset", "--seed", "--sort", "--descending"} & args.given)
    if map_only and not args.family_map:
        raise ConfigError(f"{', '.join(map_only)} only with --family-map")
    if args.family_map:
        if args.peft_coverage:
            raise ConfigError("give --family-map or --peft-coverage, not both")
        from .core.model.experiment import Setup
        from .core.runs.family_map import family_map, map_table

        base = args.base or "tiny"
        dataset = load_builtin(args.dataset or default_dataset(base))
        print(map_table(family_map(Setup(base, next(iter(METHODS)), {}, args.seed), dataset), args.sort,
                        args.descending))
        return 0
    if args.peft_coverage:
        from .core.methods.peft_coverage import coverage_lines

        print("\n".join(coverage_lines(METHODS)))
        return 0
    width = max(len(name) for name in METHODS)
    for name, method in METHODS.items():
        print(f"{name:{width}}  {method.card.where}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .core.bases import is_architecture
    from .core.runs.compare import compare_headless, parse_methods
    from .core.runs.run_store import RunStore
    from .core.runs.train import TrainSettings

    _check_outputs({"--csv": args.csv}, {} if args.runs_dir is None else {"--runs-dir": args.runs_dir})
    if is_architecture(args.base):  # shapes only: where each method goes, how many, and memory to train
        from .core.memory.at_scale import MemoryPlan
        from .core.runs.placement_compare import compare_placements, placement_table

        plan = MemoryPlan()
        rows = list(compare_placements(args.base, load_builtin(args.dataset), parse_methods(args.methods), plan,
                                       args.seed))
        table = placement_table(rows, plan)
        if args.csv is not None:
            from .core.runs.placement_compare import write_placement_csv

            write_placement_csv(rows, args.csv)
        print(table)
        return 0
    from .core.runs.threads import ThreadChoice

    settings = TrainSettings(steps=args.steps, lr=args.lr, batch_size=args.batch_size, seed=args.seed)
    threads = ThreadChoice() if args.threads == "auto" else args.threads
    store = RunStore(args.runs_dir)
    store.check_folder()  # before the family trains: the default folder too
    bars = FamilyBars(args.steps)
    try:
        _, table = compare_headless(args.base, load_builtin(args.dataset), settings, args.seed,
                                    parse_methods(args.methods), store, args.csv, args.device,
                                    progress=bars.say, wide=args.wide, on_event=bars.follow, threads=threads)
    finally:
        bars.close()
    print(table)
    return 0


class FamilyBars:
    """compare's progress: one bar per method, titled k/N, and each method's result line on stderr."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.bar: StepBar | None = None

    def follow(self, event: Any) -> None:
        if event.kind == "start":
            self.close()
            self.bar = StepBar(self.steps, f"[{event.index + 1}/{event.total}] {event.method}")
        elif event.kind == "step" and self.bar is not None:
            self.bar.advance_to(event.step.step + 1, event.step.loss)

    def say(self, line: str) -> None:
        self.close()  # the method is done (or skipped): its bar gives way to its result line
        print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


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
    from .gui.display import display_problem

    problem = display_problem()  # before Qt: without a display it aborts the process (exit 134)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        from .gui.app import main as gui_main
    except ImportError as exc:
        print(f"error: the studio window cannot start ({exc}); use `peft-studio train` or `inspect`",
              file=sys.stderr)
        return 2
    return gui_main()


def cmd_screenshot(args: argparse.Namespace) -> int:
    """Delegates to the GUI's screenshot module (imported here only: the other commands never load Qt)."""
    from .gui.screenshot import parse_size, take, take_readme

    if args.readme:
        if args.out:
            raise PeftStudioError("give OUT.png or --readme FOLDER, not both")
        if args.family_map:
            raise PeftStudioError("--family-map writes one picture (OUT.png), not the README's")
        take_readme(args.readme, steps=args.steps, report=lambda path: print(path, flush=True))
        return 0
    if not args.out:
        raise PeftStudioError("give the picture to write (OUT.png), or --readme FOLDER for every README picture")
    if args.family_map:
        from .gui.screenshot import take_family_map

        unused = sorted({"--method", "--steps"} & args.given)
        if unused:
            raise ConfigError(f"{', '.join(unused)}: the family map shows every method, untrained")
        size = parse_size(args.size) if "--size" in args.given else (1280, 720)
        print(take_family_map(args.out, base=args.base, size=size, presentation=args.presentation))
        return 0
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
        from .core.bases.decoder_checkpoint import loading_progress

        with loading_progress(TerminalProgress()):
            return _run(args)
    except PeftStudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`| head -1`): main_entry ends quietly
        raise
    except Exception as exc:  # noqa: BLE001 - a bug, not a user mistake: one line here, the traceback in the log
        message = report_unexpected(exc, f"peft-studio {args.command or ''}".strip())
        hint = "" if args.verbose else f"; the traceback is in {log_file()} (or rerun with --verbose)"
        print(f"error: unexpected {message} - a bug in PEFT Studio{hint}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    commands = {"train": cmd_train, "inspect": cmd_inspect, "lessons": cmd_lessons, "compare": cmd_compare,
                "predict": cmd_predict, "recipe": cmd_recipe, "screenshot": cmd_screenshot, "generate": cmd_generate}
    if args.command == "methods":
        return cmd_methods(args)
    if args.command in commands:
        return commands[args.command](args)
    return start_gui()


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
