"""Long commands show progress on a terminal (tqdm on stderr: steps/s, elapsed, time left) and nothing when piped;
the result lines on stdout are the same either way."""

from __future__ import annotations

import io
import re
import sys

from peft_studio.cli import main

BAR = re.compile(r"(\d+)/(\d+) \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(?:step/s|s/step)")  # done/total [elapsed<left, rate


class Terminal(io.StringIO):
    """What a terminal is to tqdm: a stream that says it is a TTY."""

    def isatty(self) -> bool:
        return True


def run(monkeypatch, capsys, stderr: io.StringIO, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    monkeypatch.setattr(sys, "stderr", stderr)
    code = main(list(argv))
    return code, capsys.readouterr().out, stderr.getvalue()


TRAIN = ("train", "--steps", "12", "--log-every", "5")


def test_train_shows_a_bar_on_a_terminal_and_the_same_lines(monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, Terminal(), *TRAIN)
    assert code == 0
    done = [(int(a), int(b)) for a, b in BAR.findall(err)]
    assert done and all(total == 12 for _, total in done) and max(d for d, _ in done) == 12
    assert "lora on tiny" in err and "loss " in err
    code, piped_out, piped_err = run(monkeypatch, capsys, io.StringIO(), *TRAIN)
    assert code == 0 and piped_err == "" and "\r" not in piped_out
    assert piped_out == out  # the bar never mixes into stdout
    assert [line[:8] for line in out.splitlines() if line.startswith("step=")] == ["step=000", "step=005", "step=010",
                                                                                   "step=011"]


def test_compare_counts_methods_k_of_n_on_a_terminal(monkeypatch, capsys, tmp_path):
    argv = ("compare", "--methods", "lora,head-only", "--steps", "4", "--runs-dir", str(tmp_path))
    code, out, err = run(monkeypatch, capsys, Terminal(), *argv)
    assert code == 0 and "[1/2] lora" in err and "[2/2] head-only" in err
    assert {total for _, total in BAR.findall(err)} == {"4"}
    assert re.search(r"(^|\r)lora: 4 steps, train acc", err, re.M)  # each method's result line stays
    assert max(map(len, out.splitlines())) <= 100 and "+latency ms" not in out
    code, wide, piped_err = run(monkeypatch, capsys, io.StringIO(), *argv, "--wide")
    assert code == 0 and "\r" not in piped_err and "[1/2]" not in piped_err
    assert piped_err.splitlines()[0].startswith("lora: 4 steps")
    assert "+latency ms" in wide.splitlines()[0] and "where the trainable part sits" in wide
