"""The command line's help: every flag with its default, every command with examples, errors on one line.

`add_command` is how cli.py adds a subcommand: its help line (listed by `peft-studio --help`), a
description, and examples shown at the end of `peft-studio COMMAND --help`. The formatter appends
"(default: X)" to a flag whose help does not already say its default.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
from collections.abc import Sequence
from typing import Any, NoReturn

PROG = "peft-studio"


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag or value is one `error: ...` line and exit 2, not a usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples keep their line breaks; each flag's help ends with its default."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=min(_terminal_width(), 110))

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.option_strings and not _states_default(text) and shows_default(action):
            text += " (default: %(default)s)"
        return text


def _terminal_width() -> int:
    return shutil.get_terminal_size((100, 24)).columns


def _states_default(text: str) -> bool:
    return "default" in text.lower()


def shows_default(action: argparse.Action) -> bool:
    """A default worth printing: a value the flag takes when not given (not None, not a switch's False)."""
    if action.default in (None, argparse.SUPPRESS) or isinstance(action, argparse._HelpAction):
        return False
    return not (action.nargs == 0 and action.default is False)


def wrap(text: str) -> str:
    """A description's paragraphs filled to the help's width (the formatter keeps line breaks as written)."""
    width = min(_terminal_width(), 110) - 2
    return "\n".join(textwrap.fill(paragraph, width) for paragraph in text.split("\n"))


def examples_epilog(examples: Sequence[str]) -> str:
    """'examples:' then one indented line per example ("command  # what it does" stays as written)."""
    return "examples:\n" + "\n".join(f"  {line}" for line in examples)


def add_command(commands: Any, name: str, summary: str, description: str = "",
                examples: Sequence[str] = ()) -> argparse.ArgumentParser:
    """A subcommand listed with `summary` by `peft-studio --help`, its own help ending with `examples`."""
    return commands.add_parser(name, help=summary, description=wrap(description or summary),
                               epilog=examples_epilog(examples) if examples else None,
                               formatter_class=HelpFormatter)


def undocumented_flags(parser: argparse.ArgumentParser) -> list[str]:
    """Flags of `parser` and its subcommands that have no help text ('command --flag'), for the tests."""
    missing = []
    for command, sub in [("", parser), *subcommands(parser).items()]:
        for action in sub._actions:
            if action.option_strings and not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"{command} {action.option_strings[-1]}".strip())
    return missing


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}
