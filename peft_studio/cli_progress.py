"""Progress bars for long commands (train, compare): tqdm on a terminal, nothing when stderr is piped.

The bar goes to stderr; result lines go to stdout through `StepBar.write`, which clears and redraws the bar
around them, so a terminal shows both and a pipe gets only the lines.
"""

from __future__ import annotations

import shutil
import sys
from typing import Any

from tqdm import tqdm


class StepBar:
    """One bar of `total` steps: steps/s, elapsed and time left (ETA), plus the latest loss."""

    def __init__(self, total: int, description: str = "", stream: Any = None) -> None:
        stream = sys.stderr if stream is None else stream
        shown = bool(getattr(stream, "isatty", lambda: False)())
        columns = min(shutil.get_terminal_size((100, 24)).columns, 120)  # a 0-column pty would hide the bar
        self._bar = tqdm(total=total, desc=description or None, unit="step", file=stream, disable=not shown,
                         ncols=columns, leave=False, mininterval=0.25, smoothing=0.1)

    @property
    def shown(self) -> bool:
        return not self._bar.disable

    def advance_to(self, done: int, loss: float | None = None) -> None:
        """`done` steps finished so far (the trainer reports step indices; events may skip none or some)."""
        if loss is not None and self.shown:
            self._bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
        if done > self._bar.n:
            self._bar.update(done - self._bar.n)

    def write(self, line: str, stream: Any = None) -> None:
        """A line of output above the bar (stdout unless `stream` says otherwise)."""
        target = sys.stdout if stream is None else stream
        if self.shown:
            tqdm.write(line, file=target)
        else:
            print(line, file=target, flush=True)

    def close(self) -> None:
        if self.shown:
            self._bar.refresh()  # the last count and rate are drawn once, even when the steps outran mininterval
        self._bar.close()

    def __enter__(self) -> StepBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
