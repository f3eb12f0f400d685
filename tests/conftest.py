"""Every test writes per-user state (the log file) to a temporary folder, never the user's own."""

import os
import tempfile

os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="peft-studio-state-")
