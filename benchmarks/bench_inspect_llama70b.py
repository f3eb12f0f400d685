"""Inspecting Llama-3-70B on the meta device: seconds and peak memory of `peft-studio inspect` (target: a few
seconds and under 500 MB).

    python benchmarks/bench_inspect_llama70b.py

Each run is its own process, so the peak resident size is the command's own (torch's import included)."""

from __future__ import annotations

import resource
import subprocess
import sys
import time

COMMAND = [sys.executable, "-m", "peft_studio", "inspect", "--base", "llama-3-70b", "--method", "lora",
           "--targets", "all-linear", "--r", "16", "--json"]
BARE = [sys.executable, "-c", "import torch"]


def run(command: list[str]) -> tuple[float, float]:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: kB -> MB


def main() -> None:
    bare_s, bare_mb = run(BARE)
    best = min(run(COMMAND)[0] for _ in range(3))
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"import torch alone: {bare_s:.2f} s, {bare_mb:.0f} MB peak")
    print(f"inspect llama-3-70b, LoRA r=16 on all linear layers (--json): best of 3 {best:.2f} s, "
          f"peak resident {peak:.0f} MB")


if __name__ == "__main__":
    main()
