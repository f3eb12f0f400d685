"""CUDA checks for a machine with a GPU (the suite runs on CPU-only CI): `python benchmarks/gpu_check.py`.

Each check prints `name: ok ...` or `name: FAIL ...`; the exit code is the number of failures.
- training on cuda matches training on cpu (same seed, same losses within float tolerance);
- Experiment.reset keeps the device that to() chose;
- the memory ledger on cuda: the measured step's max_memory_allocated is reported and covers
  the tensors counted;
- the family run (compare) on cuda fills a row per method; a method that cannot run there is skipped
  with its reason, never a crash.
"""

from __future__ import annotations

import sys
import tempfile
import traceback
from collections.abc import Callable

import torch

from peft_studio.core.data import load_builtin
from peft_studio.core.memory.ledger import measure_ledger
from peft_studio.core.model.experiment import Experiment, Setup
from peft_studio.core.runs.compare import run_family
from peft_studio.core.runs.run_store import RunStore
from peft_studio.core.runs.train import TrainSettings, train

FAILURES: list[str] = []


def check(name: str, body: Callable[[], str]) -> None:
    try:
        print(f"{name}: ok {body()}", flush=True)
    except Exception as exc:  # noqa: BLE001 - every check reports, the script goes on
        FAILURES.append(name)
        print(f"{name}: FAIL {type(exc).__name__}: {exc}", flush=True)
        traceback.print_exc()


def losses(device: str, base: str, method: str, steps: int = 20) -> list[float]:
    experiment = Experiment(Setup(base, method, {}, seed=0), load_builtin("intents"))
    experiment.to(device)
    return [e.loss for e in train(experiment, TrainSettings(steps=steps, lr=1e-2, track_grads=False))]


def same_training() -> str:
    out = []
    for base, method in (("tiny", "lora"), ("tiny", "adapter"), ("tiny", "prefix-tuning"), ("tiny-decoder", "lora")):
        cpu, cuda = losses("cpu", base, method), losses("cuda", base, method)
        worst = max(abs(a - b) for a, b in zip(cpu, cuda, strict=True))
        assert worst < 1e-3, f"{base}/{method}: cpu and cuda losses differ by {worst}"
        out.append(f"{base}/{method} {worst:.1e}")
    return "; ".join(out)


def reset_keeps_device() -> str:
    experiment = Experiment(Setup("tiny", "lora"), load_builtin("intents"))
    experiment.to("cuda")
    experiment.reset()
    devices = {p.device.type for p in experiment.model.parameters()}
    assert devices == {"cuda"}, devices
    list(train(experiment, TrainSettings(steps=2, track_grads=False)))
    return "parameters stay on cuda after reset and train"


def ledger_on_cuda() -> str:
    experiment = Experiment(Setup("tiny", "prompt-tuning"), load_builtin("intents"))
    experiment.to("cuda")
    ledger = measure_ledger(experiment, 64)
    assert ledger.cuda_peak is not None and ledger.cuda_peak > 0, ledger
    return f"cuda peak {ledger.cuda_peak:,} bytes; ledger {ledger}"[:400]


def family_on_cuda() -> str:
    with tempfile.TemporaryDirectory() as folder:
        events = list(run_family("tiny", load_builtin("intents"), TrainSettings(steps=5, track_grads=False),
                                 methods=["lora", "adapter", "ia3", "prompt-tuning", "qlora"],
                                 store=RunStore(folder), device="cuda"))
    done = [e.method for e in events if e.kind == "done"]
    skipped = [f"{e.method} ({e.reason})" for e in events if e.kind == "skip"]
    assert {"lora", "adapter", "ia3", "prompt-tuning"} <= set(done), (done, skipped)
    return f"done {done}; skipped {skipped}"


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device here: nothing to check")
        return 0
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    for name, body in (("same_training_cpu_cuda", same_training), ("reset_keeps_device", reset_keeps_device),
                       ("ledger_on_cuda", ledger_on_cuda), ("family_on_cuda", family_on_cuda)):
        check(name, body)
    print(f"{4 - len(FAILURES)} passed, {len(FAILURES)} failed")
    return len(FAILURES)


if __name__ == "__main__":
    sys.exit(main())
