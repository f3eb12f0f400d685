import pytest
from peft_block_diag import install_fast_block_diag
from plugin_shift import shift_method  # noqa: F401 - the fixture, shared with the GUI tests


@pytest.fixture(autouse=True)
def peft_boft_as_on_a_gpu():
    """PEFT's BOFT with its block-diagonal extension wherever a test has loaded peft (see peft_block_diag)."""
    install_fast_block_diag()
