"""`peft-studio` where no window can open: one `error:` line and exit 2, decided before Qt aborts the process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from peft_studio.gui import display
from peft_studio.gui.display import debian_package, display_problem, x_server_unreachable

DISPLAY_VARIABLES = ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")


def run_app(tmp_path, **env: str) -> subprocess.CompletedProcess:
    """`python -m peft_studio` (no arguments: the window) with only `env` deciding the display."""
    clean = {k: v for k, v in os.environ.items() if k not in DISPLAY_VARIABLES}
    return subprocess.run([sys.executable, "-m", "peft_studio"], env={**clean, **env}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def free_display_number() -> int:
    return next(n for n in range(90, 200) if not os.path.exists(f"/tmp/.X11-unix/X{n}"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DISPLAY decides only on Linux")
def test_no_display_is_one_error_line_and_exit_2_not_an_abort(tmp_path):
    result = run_app(tmp_path)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith("error: no display") and result.stderr.count("\n") == 1
    for advice in ("peft-studio --help", "peft-studio screenshot", "QT_QPA_PLATFORM"):
        assert advice in result.stderr
    assert "xcb" not in result.stderr  # not Qt's plugin message


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 sockets")
def test_a_display_nobody_serves_is_named(tmp_path):
    number = free_display_number()
    result = run_app(tmp_path, DISPLAY=f":{number}")
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.startswith(f"error: cannot reach the X display DISPLAY=:{number}")
    assert result.stderr.count("\n") == 1


def test_a_chosen_platform_or_a_display_lets_qt_decide():
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux") is None
    assert display_problem({}, "darwin") is None and display_problem({}, "win32") is None
    assert display_problem({}, "linux").startswith("no display")


def test_a_listening_x_socket_counts_as_a_display(tmp_path, monkeypatch):
    """A local display ':N' is the socket /tmp/.X11-unix/XN (or its abstract twin): one that accepts is enough."""
    number = free_display_number()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(f"\0/tmp/.X11-unix/X{number}")  # abstract: leaves no file behind
    server.listen(1)
    try:
        assert x_server_unreachable(f":{number}") is None
        assert x_server_unreachable(f":{number}.0") is None
    finally:
        server.close()
    assert "nothing listens" in x_server_unreachable(f":{number}")
    assert x_server_unreachable("/private/tmp/launch-x/org.xquartz:0") is None  # a form it does not know: Qt decides
    with socket.socket() as tcp:  # bound but not listening: a TCP display that refuses, named with its port
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        assert port >= 6000 and f"127.0.0.1:{port}" in x_server_unreachable(f"127.0.0.1:{port - 6000}")


def test_missing_system_libraries_are_named_with_their_debian_packages(monkeypatch, tmp_path):
    plugin = tmp_path / "libqxcb.so"
    plugin.write_bytes(b"")
    ldd = tmp_path / "ldd"  # what ldd prints for a plugin whose libraries are missing
    ldd.write_text("#!/bin/sh\necho '\tlibxcb-icccm.so.4 => not found'\necho '\tlibc.so.6 => /lib/libc.so.6'\n"
                   "echo '\tlibxkbcommon-x11.so.0 => not found'\necho '\tlibxcb-icccm.so.4 => not found'\n")
    ldd.chmod(0o755)
    monkeypatch.setattr(display.shutil, "which", lambda name: str(ldd) if name == "ldd" else None)
    assert display.missing_xcb_libraries(plugin) == ["libxcb-icccm.so.4", "libxkbcommon-x11.so.0"]
    monkeypatch.setattr(display, "xcb_plugin", lambda: plugin)
    monkeypatch.setattr(display, "x_server_unreachable", lambda value: None)
    problem = display_problem({"DISPLAY": ":0"}, "linux")
    assert "apt-get install libxcb-icccm4 libxkbcommon-x11-0" in problem and "QT_QPA_PLATFORM" in problem


@pytest.mark.parametrize(("library", "package"), [("libxcb-cursor.so.0", "libxcb-cursor0"),
                                                  ("libxcb-keysyms.so.1", "libxcb-keysyms1"),
                                                  ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
                                                  ("libEGL.so.1", "libegl1"), ("weird", "weird")])
def test_debian_package_names_follow_the_policy(library, package):
    assert debian_package(library) == package
