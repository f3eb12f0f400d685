"""Can a window open here? Asked before QApplication exists: without a display Qt aborts the whole
process (SIGABRT, exit 134) with a hint about libxcb-cursor0 that is usually not the problem.

Imports no Qt module: the answer must come before Qt loads its platform plugin.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

ALTERNATIVES = ("use the command line (`peft-studio --help`: train, inspect, compare, ...), render the window to a "
                "picture (`peft-studio screenshot OUT.png`), run it under `xvfb-run`, or set QT_QPA_PLATFORM "
                "(e.g. QT_QPA_PLATFORM=vnc and a VNC viewer on port 5900)")


def display_problem(environ: dict[str, str] | None = None, platform: str | None = None) -> str | None:
    """Why the studio window cannot open here, as one sentence; None when it can (or when Qt decides).

    On Linux and the BSDs a window needs DISPLAY (X11) or WAYLAND_DISPLAY, unless QT_QPA_PLATFORM names
    another platform. With only DISPLAY, Qt uses its xcb plugin: the system libraries it links are checked
    here, so a missing one is named (with Debian's package) instead of Qt's generic abort."""
    env = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if platform in ("win32", "darwin", "cygwin") or env.get("QT_QPA_PLATFORM"):
        return None
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        return f"no display to open the studio window on (neither DISPLAY nor WAYLAND_DISPLAY is set): {ALTERNATIVES}"
    if env.get("WAYLAND_DISPLAY"):
        return None  # Qt tries Wayland first and falls back to xcb itself
    unreachable = x_server_unreachable(env["DISPLAY"])
    if unreachable:
        return f"cannot reach the X display DISPLAY={env['DISPLAY']} ({unreachable}): {ALTERNATIVES}"
    missing = missing_xcb_libraries()
    if missing:
        packages = " ".join(debian_package(name) for name in missing)
        return (f"Qt's X11 plugin cannot load: the system lacks {', '.join(missing)} (Debian/Ubuntu: "
                f"apt-get install {packages}); or {ALTERNATIVES}")
    return None


def x_server_unreachable(display: str, timeout_s: float = 3.0) -> str | None:
    """Why the X server DISPLAY names does not answer (None when a connection opens, or the form is unknown).

    ":N" and "unix:N" are the local socket /tmp/.X11-unix/XN (or its abstract twin); "HOST:N" is TCP port 6000+N."""
    found = re.fullmatch(r"(?P<host>[^:/]*)(?:/unix)?:(?P<number>\d+)(?:\.\d+)?", display)
    if not found:
        return None  # a form Qt may know and this check does not (e.g. a launchd path): let Qt decide
    host, number = found.group("host"), int(found.group("number"))
    if host in ("", "unix"):
        path = f"/tmp/.X11-unix/X{number}"
        for address in (path, "\0" + path):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout_s)
                try:
                    sock.connect(address)
                    return None
                except OSError:
                    continue
        return f"nothing listens on {path}"
    try:
        with socket.create_connection((host, 6000 + number), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"{host}:{6000 + number}: {exc.strerror or exc}"


def xcb_plugin() -> Path | None:
    """PySide6's X11 platform plugin, found without importing PySide6."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        plugin = Path(folder) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        if plugin.is_file():
            return plugin
    return None


def missing_xcb_libraries(plugin: Path | None = None) -> list[str]:
    """The shared libraries the xcb plugin needs and the system lacks ([] when it loads, or cannot be found).

    `ldd` lists every missing one at once; without it, loading the plugin names the first."""
    plugin = plugin or xcb_plugin()
    if plugin is None:
        return []
    ldd = shutil.which("ldd")
    if ldd:
        try:
            out = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            out = None
        if out is not None:
            return sorted(set(re.findall(r"^\s*(\S+) => not found", out, re.M)))
    try:
        ctypes.CDLL(str(plugin))
    except OSError as exc:
        found = re.match(r"(\S+?\.so[.\d]*): cannot open shared object file", str(exc))
        return [found.group(1)] if found else []
    return []


def debian_package(library: str) -> str:
    """Debian's package name for a shared library: libxcb-icccm.so.4 -> libxcb-icccm4 (its naming policy)."""
    found = re.fullmatch(r"(lib[\w+.-]+?)\.so\.(\d+)(?:\.\d+)*", library)
    if not found:
        return library
    name, major = found.group(1).lower(), found.group(2)
    return f"{name}-{major}" if name[-1].isdigit() else f"{name}{major}"
