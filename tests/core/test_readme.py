"""README stays true: CI runs its test command word for word, the app command starts the app, and the command-line
examples run as written."""

import re
import shlex
from pathlib import Path

from peft_studio.core.data import load_builtin

ROOT = Path(__file__).resolve().parents[2]


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = text.split("```bash\n")[1:3]
    return [block.split("\n```")[0].strip() for block in blocks]


def test_ci_runs_the_readme_test_command_word_for_word():
    app_command, test_command = _commands()
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_command in ci_lines
    assert "pytest" in test_command and "torch==2.13.0" in test_command


def test_the_app_command_installs_and_starts_the_studio():
    app_command, _ = _commands()
    assert "torch==2.13.0" in app_command and "pip install -e ." in app_command
    assert app_command.endswith("peft-studio")


# ---- the README's command-line examples, run as written --------------------------------------------------
EXAMPLE_SECTIONS = ("## Command line", "## Hand off to a real trainer")


def readme_examples() -> list[str]:
    """Every `peft-studio ...` line in the code blocks of EXAMPLE_SECTIONS, continuation lines joined, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines: list[str] = []
    for heading in EXAMPLE_SECTIONS:
        section = text.split(f"\n{heading}", 1)[1].split("\n## ", 1)[0]
        for block in section.split("```")[1::2]:
            joined = block.replace("\\\n", " ")
            lines += [line.strip() for line in joined.splitlines() if line.strip().startswith("peft-studio")]
    return lines


def test_the_readme_examples_run_as_written(tmp_path, monkeypatch, capsys):
    """In a fresh folder, in order, as a reader would type them (my.csv is the reader's own data file)."""
    from peft_studio.cli import main

    examples = readme_examples()
    assert len(examples) >= 12
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # compare saves its runs there
    (tmp_path / "my.csv").write_bytes((ROOT / "resources" / "datasets" / "sentiment.csv").read_bytes())
    outputs = {}
    for line in examples:
        words = shlex.split(line.split("  #", 1)[0])
        if words == ["peft-studio"]:
            continue  # the window: tests/gui/test_app.py and test_display.py
        capsys.readouterr()
        code = main(words[1:])
        out, err = capsys.readouterr()
        assert code == 0, f"{line}\n{err[-2000:]}"
        outputs[line] = out
    predict = next(out for line, out in outputs.items() if line.startswith("peft-studio predict"))
    label = re.fullmatch(r"refund my order please -> (\w+) \((0\.\d\d|1\.00)\)", predict.strip())
    assert label and label[1] in load_builtin("intents").label_names, predict
    assert (tmp_path / "board.csv").is_file() and (tmp_path / "llama-lora" / "train.py").is_file()
    assert "word-order" in next(out for line, out in outputs.items() if line.startswith("peft-studio lessons"))
