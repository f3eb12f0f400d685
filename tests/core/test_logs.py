"""Unexpected errors (bugs, not user mistakes) keep their tracebacks: the log file, --verbose, the window's Details."""

from __future__ import annotations

import pytest

from peft_studio import cli
from peft_studio.core.data import load_builtin
from peft_studio.core.logs import configure_logging, details_for, log_file
from peft_studio.core.methods import get_method
from peft_studio.core.model.experiment import Setup
from peft_studio.core.studio import StudioState


def _boom(*_args, **_kwargs):
    raise RuntimeError("a bug deep inside")


def test_an_unexpected_cli_error_is_one_line_and_the_traceback_is_logged(monkeypatch, capsys):
    monkeypatch.setattr(cli, "cmd_methods", _boom)
    assert cli.main(["methods"]) == 1  # not 2: this is not the user's mistake
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: unexpected RuntimeError: a bug deep inside")
    assert "Traceback" not in err and str(log_file()) in err
    assert "Traceback" in log_file().read_text() and "_boom" in log_file().read_text()


def test_verbose_prints_the_traceback(monkeypatch, capsys):
    monkeypatch.setattr(cli, "cmd_methods", _boom)
    assert cli.main(["methods", "--verbose"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "_boom" in err
    configure_logging()  # back to the file only


def test_user_mistakes_are_not_logged_as_bugs(capsys):
    before = log_file().read_text() if log_file().exists() else ""
    assert cli.main(["train", "--method", "lora", "--r", "0"]) == 2
    after = log_file().read_text() if log_file().exists() else ""
    assert "unexpected error" not in after[len(before):]


def test_a_method_that_fails_to_attach_is_reported_with_its_traceback(monkeypatch):
    studio = StudioState(Setup("tiny", "lora", {}), load_builtin("intents"))
    failures = []
    studio.on("failed", lambda title, message: failures.append(message))
    monkeypatch.setattr(type(get_method("ia3")), "attach", _boom)
    assert not studio.set_method("ia3")
    assert failures == ["RuntimeError: a bug deep inside"]
    details = details_for(failures[0])
    assert details and "Traceback" in details and "_boom" in details
    assert studio.setup.method == "lora"  # the working experiment stays


@pytest.mark.parametrize("message", ["r must be in [1, 4096]", ""])
def test_no_details_for_messages_that_are_not_recorded_bugs(message):
    assert details_for(message) is None
