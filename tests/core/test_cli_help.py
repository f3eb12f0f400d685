"""Help that answers: `peft-studio --help` lists every command; each command's help shows every flag with its help
and default, and examples that still parse; `--import-peft` names every PEFT type the registry imports."""

from __future__ import annotations

import argparse
import shlex

import pytest

from peft_studio.cli import build_parser, main
from peft_studio.cli_help import shows_default, subcommands, undocumented_flags
from peft_studio.core.methods import METHODS
from peft_studio.core.methods.method import Method

PARSER = build_parser()
COMMANDS = subcommands(PARSER)


def help_text(capsys, *argv: str) -> str:
    assert main([*argv, "--help"]) == 0
    return capsys.readouterr().out


def flag_help(text: str, flag: str) -> str:
    """The help argparse printed for `flag` (its line and the wrapped lines under it), on single spaces."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith(flag + " "))
    block = [lines[start].lstrip()[len(flag):]]
    for line in lines[start + 1:]:
        if not line.startswith(" " * 8) or line.lstrip().startswith("-"):
            break
        block.append(line)
    return " ".join(" ".join(block).split())


def test_top_level_help_lists_every_command_with_its_summary(capsys):
    text = help_text(capsys)
    assert {"train", "inspect", "methods", "lessons", "compare", "predict", "recipe", "screenshot"} <= set(COMMANDS)
    for name in COMMANDS:
        assert f"\n    {name}" in text, name
    assert "examples:" in text and "opens the studio window" in text


def test_every_flag_has_help():
    assert undocumented_flags(PARSER) == []


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_default_is_shown(capsys, command):
    text = " ".join(help_text(capsys, command).split())  # argparse wraps; compare on single spaces
    for action in COMMANDS[command]._actions:
        if action.option_strings and shows_default(action) and "default" not in (action.help or "").lower():
            assert f"(default: {action.default})" in text, f"{command} {action.option_strings[-1]}"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_has_examples_that_parse(capsys, command):
    """Examples are part of the help, so they must stay true: each `peft-studio ...` line parses as written."""
    text = help_text(capsys, command)
    assert "\nexamples:\n" in text, f"{command}: give it examples (cli_help.add_command)"
    lines = [line.strip() for line in text.split("\nexamples:\n", 1)[1].splitlines() if line.strip()]
    commands = [shlex.split(line.split("  #")[0]) for line in lines if line.startswith("peft-studio")]
    assert any(words[1:2] == [command] for words in commands), f"{command}: no example runs it"
    for words in commands:
        try:
            PARSER.parse_args(words[1:])
        except SystemExit as exc:
            pytest.fail(f"{command} example does not parse ({exc.code}): {' '.join(words)}")
        capsys.readouterr()


def test_methods_help_says_what_it_prints(capsys):
    assert "one line per registered method" in " ".join(help_text(capsys, "methods").split())


def test_import_peft_names_every_format_the_registry_imports(capsys):
    importable = {m.peft_type for m in METHODS.values()
                  if m.peft_type and type(m).peft_translate is not Method.peft_translate}
    assert importable >= {"LORA", "IA3", "PROMPT_TUNING", "PREFIX_TUNING", "VERA", "LN_TUNING"}
    section = flag_help(help_text(capsys, "train"), "--import-peft FOLDER")
    for peft_type in importable:
        assert peft_type in section, peft_type


def test_method_flags_show_each_methods_own_default(capsys):
    r_defaults = {name: m.config_cls().r for name, m in METHODS.items() if hasattr(m.config_cls(), "r")}
    section = flag_help(help_text(capsys, "train"), "--r R")
    assert "default:" in section
    for name, value in r_defaults.items():
        assert str(value) in section and name in section, (name, section)


def test_a_subcommand_is_an_argparse_parser_with_the_shared_formatter():
    from peft_studio.cli_help import HelpFormatter

    for name, parser in COMMANDS.items():
        assert isinstance(parser, argparse.ArgumentParser) and parser.formatter_class is HelpFormatter, name


def test_every_bool_method_option_can_be_turned_on_and_off():
    """A switch that is on by default (PSOFT's, Super-Tuning's, ...) must be turnable off from the command line
    (a field that is a bool for one method and a name for another is a text flag: init_weights)."""
    from peft_studio.cli import method_flags

    switches = [flag for flag in method_flags() if flag.kind is bool]
    assert any(True in flag.defaults.values() for flag in switches)  # the case this test is for exists
    parser = build_parser()
    for flag in switches:
        assert getattr(parser.parse_args(["train", flag.flag]), flag.field) is True
        assert getattr(parser.parse_args(["train", "--no-" + flag.flag[2:]]), flag.field) is False
        assert getattr(parser.parse_args(["train"]), flag.field) is None  # absent: the method's own default
