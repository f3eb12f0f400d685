"""The memory ledger per method: estimate vs measurement, one line per method and category.

    python benchmarks/memory_ledger.py [--base tiny] [--dataset intents] [--batch-size 64] [--device cpu|cuda]

On CUDA it also prints torch.cuda.max_memory_allocated for the measured step, which includes what the
ledger leaves out on purpose (the allocator's rounding, cuBLAS workspaces, temporaries freed within the step).
"""

from __future__ import annotations

import argparse
import time

from peft_studio.core.data import load_builtin
from peft_studio.core.memory.ledger import estimate_ledger, measure_ledger
from peft_studio.core.methods import METHODS
from peft_studio.core.model.experiment import Experiment, Setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default="tiny")
    parser.add_argument("--dataset", default="intents")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    data = load_builtin(args.dataset)
    worst = 0.0
    for name in METHODS:
        try:
            experiment = Experiment(Setup(args.base, name), data)
            experiment.to(args.device)
        except Exception as exc:  # a method this base or machine cannot build (e.g. no bitsandbytes)
            print(f"{name:14s} skipped: {exc}")
            continue
        started = time.perf_counter()
        estimate = estimate_ledger(experiment, args.batch_size)
        measured = measure_ledger(experiment, args.batch_size)
        off = abs(estimate.total - measured.total) / measured.total
        worst = max(worst, off)
        line = (f"{name:14s} B={measured.batch_size} L={measured.seq_len} total estimate {estimate.total:>12,} "
                f"measured {measured.total:>12,} ({100 * off:.2f}% off)")
        if measured.cuda_peak is not None:
            line += f" cuda peak {measured.cuda_peak:>12,}"
        print(f"{line}  [{time.perf_counter() - started:.2f} s]")
        for (key, _, guess), (_, _, truth) in zip(estimate.items(), measured.items(), strict=True):
            print(f"    {key:12s} {guess:>12,} {truth:>12,}")
    print(f"worst total difference: {100 * worst:.2f}%")


if __name__ == "__main__":
    main()
