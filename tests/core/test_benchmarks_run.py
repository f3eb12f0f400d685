"""benchmarks/run.py: its figure names, --help and --list work without measuring anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"
ISSUE_FIGURES = ("gui_vs_bare", "gui_vs_bare_loaded", "core_vs_bare", "ui_lateness_p99_ms", "ui_lateness_max_ms",
                 "frames_per_s", "frames_per_s_loaded", "startup_ratio", "minilm_lora_vs_peft",
                 "qlora_bytes_ratio", "plot_append_ms_1m", "minilm_steps_per_s", "click_count_llama70b_ms")


@pytest.fixture(scope="module")
def run_module():
    sys.path.insert(0, str(RUN.parent))
    try:
        import run
    finally:
        sys.path.remove(str(RUN.parent))
    return run


def test_every_figure_of_the_issue_is_listed_with_its_goal():
    result = subprocess.run([sys.executable, str(RUN), "--list"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == list(ISSUE_FIGURES)
    assert all(line.split(": ", 1)[1] for line in lines)


def test_help_names_quick():
    result = subprocess.run([sys.executable, str(RUN), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--quick" in result.stdout and "--part" not in result.stdout


def test_figures_print_as_name_colon_value(run_module):
    assert run_module.format_figure("gui_vs_bare", 0.9512) == "gui_vs_bare: 0.951"
    assert run_module.format_figure("minilm_steps_per_s", 12.34) == "minilm_steps_per_s: 12.3"
    assert run_module.format_figure("gui_threads", 2) == "gui_threads: 2"
    assert run_module.format_figure("gui_threads_loaded", 2.0) == "gui_threads_loaded: 2"
    assert run_module.format_figure("gui_threads", None) == "gui_threads: n/a"


def test_the_best_bare_loop_is_the_fastest_of_every_thread_count_and_policy(run_module):
    found = {"bare1default": [70.0, 75.0], "bare2default": [13.0], "bare2PASSIVE": [58.0, 40.0], "window": [1.0]}
    assert run_module.best_bare(found) == (75.0, "bare1default")


def test_the_neighbour_process_is_started_and_stopped(run_module):
    with run_module.Neighbour() as neighbour:
        assert neighbour.process.poll() is None
    assert neighbour.process.poll() is not None
