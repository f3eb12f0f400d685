"""Core tests: the shared test plugin's fixture, one torch thread for the whole session, and PEFT's BOFT as it runs
with its CUDA extension."""

from __future__ import annotations

import pytest
import torch
from peft_block_diag import install_fast_block_diag
from plugin_shift import shift_method  # noqa: F401 - the fixture, shared with the GUI tests


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The tests' models are tiny and the test machine is often shared: with a neighbour on the other core, two
    OpenMP threads spin-wait and the same tests took ten times the CPU (DESIGN.md, known traps). One thread is
    also one summation order, so a test's numbers do not move with the machine's load. A test about thread
    counts sets its own."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def peft_boft_as_on_a_gpu():
    """PEFT's BOFT with its block-diagonal extension wherever a test has loaded peft (see peft_block_diag)."""
    install_fast_block_diag()
