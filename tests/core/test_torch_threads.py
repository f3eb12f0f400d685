"""A thread's torch thread count stays what the thread set, whatever other threads set afterwards."""

from __future__ import annotations

import threading

import torch

from peft_studio.core.runs.torch_threads import set_torch_threads


def test_a_count_set_before_the_threads_first_op_survives_another_threads_count():
    """The live lens thread sets 1 before any op while the trainer thread sets 2: torch starts a thread's count
    at its first op from the count set last by any thread, so without the first read the lens ran on two."""
    original = torch.get_num_threads()
    seen: list[int] = []
    count_set, other_set = threading.Event(), threading.Event()

    def lens_thread() -> None:
        set_torch_threads(1)
        count_set.set()
        other_set.wait(10)
        torch.ones(4) + 1  # this thread's first op
        seen.append(torch.get_num_threads())

    thread = threading.Thread(target=lens_thread)
    thread.start()
    try:
        count_set.wait(10)
        torch.set_num_threads(2)  # the trainer's count, set meanwhile on another thread
        other_set.set()
        thread.join(10)
    finally:
        torch.set_num_threads(original)
    assert seen == [1]
