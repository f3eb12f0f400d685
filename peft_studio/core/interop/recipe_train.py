"""Train the PEFT Studio setup on the real model: transformers + peft (+ bitsandbytes), driven by accelerate.

Written by `peft-studio recipe` (the studio copies this file verbatim as train.py; its settings are the
JSON files beside it). Run it with `accelerate launch --config_file accelerate_configs/1gpu.yaml train.py`, or with
plain `python train.py`. A smoke test needs no download and no GPU:

    python train.py --config-only model_config.json --max-steps 2 --cpu

Before training it compares the PEFT model's trainable parameters and targets with expected.json (what the
studio's `inspect` showed) and stops on a difference.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    recipe = json.loads((HERE / "recipe.json").read_text(encoding="utf-8"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=recipe["model"], help="Hugging Face model id or local folder")
    parser.add_argument("--config-only", metavar="CONFIG_JSON",
                        help="build a randomly initialised model from this config.json (no download; a byte-level "
                             "stand-in tokenizer)")
    parser.add_argument("--max-steps", type=int, default=recipe["training"]["steps"])
    parser.add_argument("--lr", type=float, default=recipe["training"]["lr"])
    parser.add_argument("--batch-size", type=int, default=None, help="per-device micro-batch (default: the studio's)")
    parser.add_argument("--grad-accum", type=int, default=None, help="micro-batches per optimizer step")
    parser.add_argument("--eval-every", type=int, default=recipe["training"]["eval_every"])
    parser.add_argument("--output-dir", default="outputs/adapter")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU (with plain python or accelerate)")
    parser.add_argument("--skip-check", action="store_true", help="train even if the counts differ from expected.json")
    args = parser.parse_args(argv)
    args.recipe = recipe
    if args.model is None and args.config_only is None:
        parser.error("no model id is known for this config.json: pass --model ID_OR_FOLDER (or --config-only)")
    return args


# ---- data ----------------------------------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class ByteTokenizer:
    """A stand-in tokenizer for --config-only: UTF-8 bytes as ids 3..258 (folded into the vocabulary)."""

    def __init__(self, vocab_size: int, padding_side: str) -> None:
        self.vocab_size, self.padding_side = vocab_size, padding_side
        self.pad_token_id = 0

    def __call__(self, texts: list[str], max_length: int, **_: Any) -> dict[str, Any]:
        import torch

        rows = [[1 + (3 + b) % (self.vocab_size - 1) for b in text.encode("utf-8")][:max_length] or [1]
                for text in texts]
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, row in enumerate(rows):
            span = slice(width - len(row), width) if self.padding_side == "left" else slice(0, len(row))
            ids[i, span], mask[i, span] = torch.tensor(row), 1
        return {"input_ids": ids, "attention_mask": mask}


# ---- model ---------------------------------------------------------------------------------------
def load_model(args: argparse.Namespace, labels: list[str], on_gpu: bool):
    """(model, tokenizer): AutoModelForSequenceClassification with the labels, 4-bit when the recipe says so."""
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    recipe = args.recipe
    quant = recipe["quantization"]
    label_maps = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                  "label2id": {name: i for i, name in enumerate(labels)}}
    dtype = torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else torch.float32
    dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    kwargs: dict[str, Any] = {dtype_key: dtype}
    if quant:
        from transformers import BitsAndBytesConfig

        settings = dict(quant)
        for key in ("bnb_4bit_compute_dtype", "bnb_4bit_quant_storage"):
            settings[key] = getattr(torch, settings[key])
        kwargs["quantization_config"] = BitsAndBytesConfig(**settings)
        if on_gpu:
            from accelerate import PartialState

            kwargs["device_map"] = {"": PartialState().local_process_index}
    if args.config_only:
        raw = json.loads(Path(args.config_only).read_text(encoding="utf-8"))
        config = AutoConfig.for_model(**{k: v for k, v in raw.items() if k != "_name_or_path"}, **label_maps)
        tokenizer = ByteTokenizer(config.vocab_size, recipe["padding_side"])
        if config.pad_token_id is None:
            config.pad_token_id = tokenizer.pad_token_id
        model = AutoModelForSequenceClassification.from_config(config)
        if quant:  # bitsandbytes quantizes while loading: save the random model, load it back in 4 bits
            folder = tempfile.mkdtemp(prefix="recipe-random-")
            model.save_pretrained(folder)
            model = AutoModelForSequenceClassification.from_pretrained(folder, **kwargs)
        return model, tokenizer
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    tokenizer.padding_side = recipe["padding_side"]
    if tokenizer.pad_token is None:  # Llama and GPT-2 ship no pad token: pad with end-of-text (masked anyway)
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(args.model, **label_maps, **kwargs)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def peft_model(model, recipe: dict[str, Any]):
    import peft

    settings = json.loads((HERE / "peft_config.json").read_text(encoding="utf-8"))
    if recipe["quantization"]:
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    config = peft.get_peft_config(settings)
    wrapped = peft.get_peft_model(model, config)
    if recipe["freeze_head"]:  # the studio's freeze_head: the random head stays as it is
        for name, parameter in wrapped.named_parameters():
            if "modules_to_save" in name:
                parameter.requires_grad_(False)
    return wrapped


def counts(model) -> dict[str, Any]:
    adapter = head = 0
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            if "modules_to_save" in name:
                head += parameter.numel()
            else:
                adapter += parameter.numel()
    targets = sorted(getattr(model.base_model, "targeted_module_names", []) or [])
    return {"adapter_trainable": adapter, "head_trainable": head, "trainable": adapter + head, "targets": targets}


def check_counts(found: dict[str, Any], say) -> list[str]:
    """Differences from expected.json (the studio's numbers); an empty list when everything matches."""
    expected = json.loads((HERE / "expected.json").read_text(encoding="utf-8"))
    studio, peft_side = expected["studio"], expected["peft"]
    say(f"trainable parameters (PEFT adapter, head excluded) = {found['adapter_trainable']}  "
        f"studio = {studio['method_trainable']}")
    say(f"trainable parameters (classification head) = {found['head_trainable']}  expected = "
        f"{peft_side['head_trainable']} (studio head: {studio['head_trainable']})")
    say(f"trainable parameters (total) = {found['trainable']}  studio inspect = {studio['trainable']}")
    problems = []
    if found["adapter_trainable"] != studio["method_trainable"]:
        problems.append(f"the adapter trains {found['adapter_trainable']} parameters, the studio "
                        f"{studio['method_trainable']}")
    if found["head_trainable"] != peft_side["head_trainable"]:
        problems.append(f"the head trains {found['head_trainable']} parameters, expected {peft_side['head_trainable']}")
    wanted = peft_side.get("target_modules")
    if wanted and found["targets"]:  # PEFT's names may carry the task model's prefix (bert.)
        unmatched = [t for t in wanted if not any(f == t or f.endswith("." + t) for f in found["targets"])]
        if unmatched or len(found["targets"]) != len(wanted):
            problems.append(f"PEFT wrapped {len(found['targets'])} modules, the studio targets {len(wanted)}"
                            + (f" (missing {unmatched[0]})" if unmatched else ""))
    return problems


# ---- training ------------------------------------------------------------------------------------
def keep_bitsandbytes_out() -> None:
    """A recipe without 4-bit weights never needs bitsandbytes, but peft imports it whenever it is installed,
    and that import can log a CPU-kernel notice. A None entry in sys.modules makes `import bitsandbytes` fail
    and importlib.util.find_spec return None, so peft and transformers see it as absent."""
    recipe = json.loads((HERE / "recipe.json").read_text(encoding="utf-8"))
    if not recipe["quantization"] and "bitsandbytes" not in sys.modules:
        sys.modules["bitsandbytes"] = None  # type: ignore[assignment]


def progress_bar(total: int, main_process: bool):
    """A tqdm bar (steps/s, time left) on a terminal; None when tqdm is missing. Quiet when stderr is piped."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="step", disable=None if main_process else True, dynamic_ncols=True, leave=False)


def main(argv: list[str] | None = None) -> int:
    import warnings

    # peft calls a transformers method that transformers 5 renamed: nothing a recipe's user can act on
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader

    args = parse_args(argv)
    recipe, training = args.recipe, args.recipe["training"]
    labels = json.loads((HERE / "data" / "labels.json").read_text(encoding="utf-8"))
    train_rows = read_jsonl(HERE / "data" / "train.jsonl")
    val_rows = read_jsonl(HERE / "data" / "validation.jsonl")
    micro = args.batch_size or (training["batch_size"] or min(len(train_rows), 8))
    # the studio's batch 0 is the whole training set: micro-batches accumulated up to it
    accum = args.grad_accum or (1 if training["batch_size"] else math.ceil(len(train_rows) / micro))
    accelerator = Accelerator(cpu=args.cpu, gradient_accumulation_steps=accum)
    say = accelerator.print
    set_seed(recipe["seed"])
    started = time.perf_counter()
    model, tokenizer = load_model(args, labels, on_gpu=accelerator.device.type == "cuda")
    if recipe["quantization"]:  # the studio quantizes every Linear site of the base, never the head
        four_bit = sum(type(m).__name__ == "Linear4bit" for m in model.modules())
        studio = json.loads((HERE / "expected.json").read_text(encoding="utf-8"))["studio"]
        say(f"4-bit Linear layers = {four_bit}  studio = {studio.get('quantized_linears')}")
    model = peft_model(model, recipe)
    found = counts(model)
    problems = check_counts(found, say)
    if problems and not args.skip_check:
        say("error: the PEFT model differs from the studio's setup: " + "; ".join(problems))
        return 3
    say("count check: " + ("OK (same as the studio)" if not problems else "DIFFERENT (--skip-check)"))

    def collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
        batch = tokenizer([r["text"] for r in rows], max_length=training["max_length"], truncation=True,
                          padding=True, return_tensors="pt")
        batch = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        batch["labels"] = torch.tensor([r["label"] for r in rows], dtype=torch.long)
        return batch

    shuffle = torch.Generator().manual_seed(training["seed"])
    train_loader = DataLoader(train_rows, batch_size=micro, shuffle=True, collate_fn=collate, generator=shuffle)
    val_loader = DataLoader(val_rows, batch_size=micro, collate_fn=collate) if val_rows else None
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer_class = torch.optim.AdamW if training["optimizer"] == "adamw" else torch.optim.Adam
    optimizer = optimizer_class(trainable, lr=args.lr, weight_decay=training["weight_decay"])
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)

    step = 0
    model.train()
    bar = progress_bar(args.max_steps, accelerator.is_local_main_process)

    def log(line: str) -> None:  # above the bar, not through it
        if bar is not None and accelerator.is_main_process:
            bar.write(line)
        else:
            say(line)

    while step < args.max_steps:
        for batch in train_loader:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            step += 1
            if bar is not None:
                bar.update(1)
            log(f"step={step} loss={loss.item():.4f}")
            if accelerator.num_processes > 1:  # every rank says it trained this step, on how many examples
                # one write per line: two ranks share the pipe, and print's text and newline are two writes
                print(f"rank={accelerator.process_index} step={step} examples={len(batch['labels'])}\n", end="",
                      flush=True)
            if val_loader is not None and (step % args.eval_every == 0 or step == args.max_steps):
                log(f"step={step} " + evaluate(model, val_loader, accelerator))
            if step >= args.max_steps:
                break
    if bar is not None:
        bar.refresh()  # the final count and rate, even when the steps outran tqdm's redraw interval
        bar.close()
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.save_pretrained(args.output_dir, is_main_process=accelerator.is_main_process,
                              save_function=accelerator.save, state_dict=accelerator.get_state_dict(model))
    say(f"saved the adapter to {args.output_dir} after {step} steps in {time.perf_counter() - started:.1f} s")
    return 0


def evaluate(model, loader, accelerator) -> str:
    import torch

    model.eval()
    correct = total = 0
    loss_sum = 0.0
    with torch.no_grad():
        for batch in loader:
            out = model(**batch)
            losses = torch.nn.functional.cross_entropy(out.logits.float(), batch["labels"], reduction="none")
            # every process's examples, each once (a padded last batch is trimmed)
            predictions, labels, losses = accelerator.gather_for_metrics((out.logits.argmax(-1), batch["labels"],
                                                                          losses))
            correct += int((predictions == labels).sum())
            total += len(labels)
            loss_sum += float(losses.sum())
    model.train()
    return f"val_loss={loss_sum / max(total, 1):.4f} val_acc={correct / max(total, 1):.3f}"


if __name__ == "__main__":
    keep_bitsandbytes_out()  # before transformers, peft or accelerate is imported
    sys.exit(main())
