"""Where the files shipped with PEFT Studio live: built-in datasets, icons and example setups.

The source of truth is the checkout's top-level ``resources/`` folder. A wheel ships it as package data at
``peft_studio/resources/`` (see ``package-dir`` in pyproject.toml), so an installed copy finds it inside the
package; a source checkout (plain or editable install, or ``PYTHONPATH``) has no such folder and uses the
``resources/`` beside ``pyproject.toml``. Every read of a shipped file goes through this module.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from ..errors import PeftStudioError


class ResourceMissingError(PeftStudioError):
    """A file that PEFT Studio ships (dataset, icon, setup) is not where the install put it."""


def resources_root() -> Path:
    """The folder holding the shipped files: inside the installed package, else the source checkout's."""
    package = files("peft_studio")
    if not isinstance(package, Path):  # e.g. a zip import: the data files have no path on disk
        raise ResourceMissingError(f"PEFT Studio's files are not on disk ({package}); install it unpacked with pip")
    installed = package / "resources"
    if installed.is_dir():
        return installed
    checkout = package.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "resources").is_dir():
        return checkout / "resources"
    return installed  # neither exists: report paths inside the package, where an install puts them


def resource_path(*parts: str) -> Path:
    """Where a shipped file or folder is, e.g. ``resource_path("icons", "lock.png")``; not checked to exist."""
    return resources_root().joinpath(*parts)


def resource_file(*parts: str) -> Path:
    """A shipped file that must exist; a missing one raises ``ResourceMissingError`` naming it."""
    path = resource_path(*parts)
    if not path.is_file():
        raise ResourceMissingError(f"PEFT Studio's file {'/'.join(parts)} is missing (looked for {path}); "
                                   "reinstall PEFT Studio")
    return path


def resource_files(folder: str, pattern: str = "*") -> list[Path]:
    """The shipped files in one folder (e.g. ``resource_files("setups", "*.json")``), sorted by name."""
    return sorted(p for p in resource_path(folder).glob(pattern) if p.is_file())
