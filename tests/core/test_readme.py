"""README's two set-up commands stay true: CI runs the same test command, the app command starts the app."""

from pathlib import Path

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
