"""One MiniLM base, three adapters: how long a switch takes, and LoRA latency merged vs not.

    python benchmarks/bench_adapter_set.py

The goal (issue 13) is a switch well under 50 ms on MiniLM: a switch puts an adapter's modules at
their paths in the base and the previous ones back, with no tensor copied and nothing rebuilt.
"""

from __future__ import annotations

import statistics
import time

import torch

from peft_studio.core.adapters.adapter_set import AdapterSet, describe_set
from peft_studio.core.adapters.lora_merge import measure_merge
from peft_studio.core.data import load_builtin


def main() -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    intents, sentiment = load_builtin("intents"), load_builtin("sentiment")
    started = time.perf_counter()
    adapters = AdapterSet.build("minilm")
    print(f"base loaded in {time.perf_counter() - started:.1f} s")
    for name, method, options, dataset in (("support-lora", "lora", {"r": 8}, intents),
                                           ("mood-lora", "lora", {"r": 8}, sentiment),
                                           ("mood-adapter", "adapter", {"bottleneck": 16}, sentiment)):
        started = time.perf_counter()
        adapters.add(name, method, options, dataset)
        print(f"added {name} in {(time.perf_counter() - started) * 1000:.0f} ms")
    print("\n".join(describe_set(adapters)))
    names = adapters.names()
    times = []
    for i in range(300):
        started = time.perf_counter()
        adapters.activate(names[i % len(names)])
        times.append((time.perf_counter() - started) * 1000)
    print(f"switch: median {statistics.median(times):.3f} ms, max {max(times):.3f} ms over {len(times)} switches "
          f"(goal < 50 ms); base fingerprint unchanged: {adapters.frozen_fingerprint() == adapters.base_fingerprint}")
    texts = list(intents.val_texts)[:32]
    with adapters.using("support-lora") as member:
        with torch.no_grad():  # a trained-looking update: a fresh LoRA has B = 0, which would merge to nothing
            for name, parameter in member.model.named_parameters():
                if name.endswith("lora_B"):
                    parameter.normal_(std=0.02)
        print("merge, batch of 32:", measure_merge(member, texts, repeats=20).summary())
    window_switch(intents)


def window_switch(intents) -> None:
    """The same switch clicked in the Adapters panel: the window follows (diagram, census, card, Try it)."""
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from peft_studio.core.model.experiment import Setup
    from peft_studio.gui.app import make_app
    from peft_studio.gui.window.controller import Controller
    from peft_studio.gui.window.main_window import MainWindow

    app = make_app([])
    window = MainWindow(Controller(Setup("minilm", "lora", {}, 0), intents))
    window.resize(1280, 720)
    window.show()
    app.processEvents()
    lab = window.docks.lab
    names = [lab.add("lora", "intents"), lab.add("adapter", "sentiment")]
    window.inference.entry.setText("need a refund")
    core, click = [], []
    for i in range(20):
        started = time.perf_counter()
        core.append(lab.switch(names[i % 2]))
        app.processEvents()
        click.append((time.perf_counter() - started) * 1000)
    print(f"window switch on MiniLM: core {statistics.median(core):.2f} ms, whole click with the window redrawn "
          f"(diagram, census, card, three predictions) median {statistics.median(click):.0f} ms, "
          f"max {max(click):.0f} ms")
    from peft_studio.gui.docks.dock_set import close_docks

    close_docks(window.docks)
    window.runner.stop_and_wait()


if __name__ == "__main__":
    main()
