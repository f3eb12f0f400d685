"""torch's lazily imported parts, imported by one thread at a time.

torch imports `torch._dynamo` (1.5 s, a web of circular imports) on first use: an optimizer's first step, or a
bitsandbytes 4-bit op. Two threads doing that first use at once (the window's warm-up thread and a family map
quantizing QLoRA's base) each see the other's half-initialised modules, and one dies with "partially initialized
module 'torch._dynamo'". Every thread the window starts calls `import_lazy_parts()` before its torch work: the
first does the import under the lock, later ones find it done.
"""

from __future__ import annotations

import sys
import threading

_LOCK = threading.Lock()


def import_lazy_parts() -> None:
    """Import torch's lazily loaded compiler parts now, serialised across threads (a no-op once done)."""
    if "torch._dynamo" in sys.modules and not _LOCK.locked():
        return
    with _LOCK:
        import torch._dynamo  # noqa: F401 - imported for its side effect: the modules are complete afterwards
