"""`peft-studio methods --peft-coverage`: every adapter type of the installed peft is classified — by the registry
(exchanged / drawn only) or by peft_coverage.py's tables (not applicable, not yet) — and the tables never contradict
the registry or name a type peft does not have."""

from __future__ import annotations

import pytest
from peft_reference import peft

from peft_studio.cli import main
from peft_studio.core.errors import ConfigError
from peft_studio.core.methods import METHODS, peft_coverage
from peft_studio.core.methods.peft_coverage import NOT_APPLICABLE, NOT_YET, coverage, installed_peft

REGISTERED = {m.peft_type for m in METHODS.values() if m.peft_type}


def test_the_types_read_from_peft_s_source_are_its_enum():
    version, types = installed_peft()
    assert types == [t.value for t in peft.PeftType]
    assert version == peft.__version__


def test_every_installed_peft_type_is_classified():
    _, types = installed_peft()
    unclassified = [t for t in types if t not in REGISTERED | set(NOT_APPLICABLE) | set(NOT_YET)]
    assert not unclassified, f"classify these in core/methods/peft_coverage.py: {unclassified}"
    assert all(row.status != "unclassified" for row in coverage(METHODS, types))


def test_the_tables_do_not_contradict_the_registry_or_go_stale():
    _, types = installed_peft()
    assert not set(NOT_APPLICABLE) & set(NOT_YET)
    registered_now = (set(NOT_APPLICABLE) | set(NOT_YET)) & REGISTERED
    assert not registered_now, f"a registered method covers {registered_now}: remove them from peft_coverage.py"
    assert set(NOT_APPLICABLE) | set(NOT_YET) <= set(types), "the tables name types this peft does not have"


def test_the_cli_prints_one_line_per_type(capsys):
    assert main(["methods", "--peft-coverage"]) == 0
    lines = capsys.readouterr().out.splitlines()
    _, types = installed_peft()
    assert len(lines) == 1 + len(types)
    assert lines[0].startswith(f"peft {peft.__version__}: {len(types)} adapter types; ")
    status = {line.split()[0]: line for line in lines[1:]}
    assert "exchanged: lora" in status["LORA"]
    assert "exchanged: loha" in status["LOHA"] and "exchanged: adalora" in status["ADALORA"]
    assert status["XLORA"].split(maxsplit=1)[1].startswith("not applicable (")


def test_a_missing_peft_is_one_error_line(monkeypatch, capsys):
    monkeypatch.setattr(peft_coverage.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="peft is not installed"):
        installed_peft()
    assert main(["methods", "--peft-coverage"]) == 2
    assert capsys.readouterr().err.startswith("error: --peft-coverage lists the installed peft")
