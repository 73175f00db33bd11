"""build.py's set-up: uv gets exactly pip's package sources, and pip takes over when uv can't."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("build_script", ROOT / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

LISTING = """\
:env:.default-timeout='180'
:env:.find-links='/opt/wheels'
freeze.index-url='https://ignored.example/simple'
global.cert='/etc/ssl/certs/ca-certificates.crt'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/elsewhere'
install.constraint='/etc/install-constraints.txt'
"""


def test_pip_settings_take_pip_precedence():
    assert build._pip_settings(LISTING) == {
        "default-timeout": "180",
        "find-links": "/opt/wheels",  # PIP_FIND_LINKS over [global]
        "cert": "/etc/ssl/certs/ca-certificates.crt",
        "constraint": "/etc/install-constraints.txt",  # [install] over [global]
        "extra-index-url": "file:///opt/pypi/simple file:///opt/pypi-more/simple",
    }  # [freeze] does not apply to an install


def test_uv_gets_pip_sources_in_pip_order(monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("UV_HTTP_TIMEOUT", "60")
    command, env = build._uv_install("uv", "py", build._pip_settings(LISTING))
    assert command[:3] == ["uv", "pip", "install"]
    flags = list(zip(command, command[1:], strict=False))
    assert ("-r", str(build.LOCK)) in flags and ("--python", "py") in flags
    assert ("--index-strategy", "unsafe-best-match") in flags
    assert "--compile-bytecode" in command and "--index-url" not in command
    extra = [b for a, b in flags if a == "--extra-index-url"]
    assert extra == ["file:///opt/pypi/simple", "file:///opt/pypi-more/simple"]
    assert [b for a, b in flags if a == "--find-links"] == ["/opt/wheels"]
    assert [b for a, b in flags if a == "--constraint"] == ["/etc/install-constraints.txt"]
    assert env["SSL_CERT_FILE"] == "/etc/ssl/certs/ca-certificates.crt"
    assert env["UV_HTTP_TIMEOUT"] == "60"  # the environment's own value wins


def test_no_index_and_settings_uv_is_not_given():
    command, _ = build._uv_install("uv", "py", {"no-index": "true", "index-url": "file:///i"})
    assert "--no-index" in command and ("--index-url", "file:///i") in zip(command, command[1:], strict=False)
    assert build._uv_install("uv", "py", {"no-index": "false"})[0][-1] == str(build.LOCK)
    reason = build._uv_install("uv", "py", {"trusted-host": "mirror.internal"})
    assert reason == "pip's setting 'trusted-host' has no uv counterpart here"


def _fake_uv(tmp_path, script):
    uv = tmp_path / ".venv" / "uv" / "bin" / "uv"
    uv.parent.mkdir(parents=True)
    uv.write_text("#!/bin/sh\n" + script)
    uv.chmod(0o755)
    return uv


@pytest.mark.skipif(os.name == "nt", reason="the fake uv is a shell script")
def test_uv_run_prints_progress(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(build, "VENV", tmp_path / ".venv")
    _fake_uv(tmp_path, f'echo "$@" > {tmp_path}/args\n'
             'echo "Resolved 178 packages in 1.31s"\necho "Installed 178 packages in 2.95s"\n')
    log = tmp_path / "setup.log"
    with log.open("w") as out:
        assert build._with_uv(sys.executable, out)
    assert capsys.readouterr().out.splitlines() == [
        "[setup] resolved 178 packages; fetching and unpacking ...",
        "[setup] installed 178 packages; compiling bytecode ...",
    ]
    assert (tmp_path / "args").read_text().startswith(f"pip install --no-config --python {sys.executable}")
    assert "Installed 178 packages" in log.read_text()


@pytest.mark.skipif(os.name == "nt", reason="the fake uv is a shell script")
def test_a_failing_uv_hands_over_to_pip_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(build, "VENV", tmp_path / ".venv")
    _fake_uv(tmp_path, 'echo "error: Failed to fetch: https://pypi.org/simple/torch/"\nexit 2\n')
    with (tmp_path / "setup.log").open("w") as out:
        assert not build._with_uv(sys.executable, out)
    assert capsys.readouterr().out == (
        "[setup] uv could not install the lock (its log: .venv/setup.log); installing with pip "
        "instead (slower)\n")
    assert "Failed to fetch" in (tmp_path / "setup.log").read_text()
