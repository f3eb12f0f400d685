"""Two threads meeting torch's lazily imported compiler parts for the first time at once: with the gate both
finish (without it, both die: "partially initialized module 'torch._dynamo'", measured 3 runs in 3)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("bitsandbytes")

RACE = """
import threading, torch
from peft_studio.core.torch_first_use import import_lazy_parts
errors = []
def guarded(work):
    def run():
        try:
            import_lazy_parts()
            work()
        except Exception as exc:
            errors.append(repr(exc)[:200])
    return run
def optimizer_step():  # the window's warm-up and every run's first step
    p = torch.nn.Parameter(torch.zeros(2, 2)); o = torch.optim.AdamW([p]); p.sum().backward(); o.step()
def quantize():  # a QLoRA build (the family map, a setup edit)
    import bitsandbytes as bnb
    bnb.functional.quantize_4bit(torch.randn(64, 64), blocksize=64, quant_type="nf4")
threads = [threading.Thread(target=guarded(optimizer_step)), threading.Thread(target=guarded(quantize))]
[t.start() for t in threads]; [t.join() for t in threads]
print("errors:", errors)
"""


def test_two_threads_first_using_torch_at_once_both_finish():
    result = subprocess.run([sys.executable, "-c", RACE], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "errors: []"
