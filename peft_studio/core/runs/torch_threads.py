"""Setting the calling thread's torch thread count so that it stays set.

torch keeps the count per thread (OpenMP), but starts each thread's count lazily, at the thread's first parallel
op, from the count any thread set last. A thread that sets 1 before its first op can thus start with another
thread's 2 instead (measured: the live lens thread set 1, the trainer thread set 2 meanwhile, and the lens ran
on a two-thread team whose spinning worker cost the 2-core trainer ~17% of its speed). Reading the count first
makes torch start this thread's count at once, so the count set next is the one its ops use.
"""

from __future__ import annotations


def set_torch_threads(count: int) -> None:
    """This thread's torch thread count, from now on (whatever other threads set later)."""
    import torch  # here, not at import: the window imports this module before its first paint, torch after it

    torch.get_num_threads()  # torch's lazy per-thread start happens here, not at this thread's first op
    torch.set_num_threads(count)
