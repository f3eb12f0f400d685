"""Python's cyclic collections kept off the window's busy moments, and done when it is idle.

A full collection walks every tracked object: with a 70B architecture's modules, Qt wrappers and the
panels' state that is 100-400 ms holding the GIL (the GUI and any worker wait), and a build allocates
enough to set one off about every other edit (an option edit on Llama-3-70B measured 170 ms, or 340-380
ms with a collection inside it).

- A training run `hold`s the heap: `gc.freeze()` keeps the objects that existed when it started out of
  every collection until it ends (a run is long: its own garbage is still collected).
- A slow build `pause`s collections from its start until shortly after its worker ends (it has committed and
  repainted by then; a build is short); the collections it postponed run once the last pause ends, when the
  window is idle.

Both nest, and are counted separately; every call is on the GUI thread.
"""

from __future__ import annotations

import gc

_holds = 0
_pauses = 0


def hold() -> None:
    """Freeze the heap as it is now (the first hold), for as long as any hold is taken."""
    global _holds
    if _holds == 0:
        gc.freeze()
    _holds += 1


def release() -> None:
    """Give one hold back; the last one lets collections walk the whole heap again."""
    global _holds
    if _holds == 0:
        return
    _holds -= 1
    if _holds == 0:
        gc.unfreeze()


def pause() -> None:
    """No cyclic collection until the matching `resume` (reference counting still frees what it can)."""
    global _pauses
    if _pauses == 0:
        gc.disable()
    _pauses += 1


def resume() -> None:
    global _pauses
    if _pauses == 0:
        return
    _pauses -= 1
    if _pauses == 0:
        gc.enable()
