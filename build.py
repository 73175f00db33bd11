#!/usr/bin/env python3
"""sightline's one entry point: set-up, build the report, test, explore.

    python build.py [--params params/demo.yaml] [--only NOTEBOOK ...] [--force]
    python build.py test [PYTEST ARGS ...]
    python build.py lab | bench [--quick] | lock
    python build.py explore [--params ...] [--host 127.0.0.1] [--port 8765] [--no-browser]

If this interpreter lacks the pinned dependencies (requirements-lock.txt), a project
virtual environment ``.venv/`` is made, the pinned set installed into it, and this
script re-runs itself there. Only the standard library is used until then.
"""

from __future__ import annotations

import ast
import hashlib
import os
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent
LOCK = ROOT / "requirements-lock.txt"
REQUIREMENTS = ROOT / "requirements.txt"
VENV = ROOT / ".venv"
MARKER = VENV / ".sightline-lock"


def _pins(path: Path) -> dict[str, str]:
    lines = (line.split("#", 1)[0] for line in path.read_text().splitlines())
    return dict((part.strip() for part in line.split("==", 1)) for line in lines if "==" in line)


def _has_pins() -> bool:
    """True when this interpreter already has every top-level pin at its version."""
    try:
        return all(metadata.version(name) == version for name, version in _pins(REQUIREMENTS).items())
    except metadata.PackageNotFoundError:
        return False


def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _lock_digest() -> str:
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()


# The installer set-up uses: uv installs the lock from the same sources as pip (pip's own
# configuration, read below) several times faster; pip installs it when uv can't be had.
UV = "uv==0.13.9"
# pip settings that are uv flags, and those that are uv environment variables (a value already
# in the environment wins); any other setting that shapes pip's install sends set-up to pip.
_UV_FLAGS = {"index-url": "--index-url", "extra-index-url": "--extra-index-url",
             "find-links": "--find-links", "constraint": "--constraint"}
_UV_ENV = {"cert": "SSL_CERT_FILE", "default-timeout": "UV_HTTP_TIMEOUT", "timeout": "UV_HTTP_TIMEOUT"}
_PIP_ONLY = {"disable-pip-version-check", "progress-bar", "root-user-action", "no-input", "quiet",
             "verbose", "no-color", "no-python-version-warning"}


def _pip_settings(listing: str) -> dict[str, str]:
    """pip's effective install settings from ``pip config list`` ([global] < [install] < PIP_*)."""
    rank = {"global": 0, "install": 1, ":env:": 2}
    chosen: dict[str, tuple[int, str]] = {}
    for line in listing.splitlines():
        key, sep, value = line.partition("=")
        section, _, name = key.rpartition(".")
        if sep and section in rank and rank[section] >= chosen.get(name, (-1, ""))[0]:
            chosen[name] = (rank[section], ast.literal_eval(value))
    return {name: value for name, (_, value) in chosen.items()}


def _uv_install(uv: str, python: str, settings: dict[str, str]) -> tuple[list[str], dict] | str:
    """The uv command (and environment) installing the lock from pip's sources, or why not.
    Indexes come in pip's order ahead of PyPI; among versions uv takes the best match across
    all indexes, as pip does, and a version found on several from the first."""
    command = [uv, "pip", "install", "--no-config", "--python", python, "--index-strategy",
               "unsafe-best-match", "--compile-bytecode", "-r", str(LOCK)]
    env = dict(os.environ)
    for name, value in settings.items():
        if name in _UV_FLAGS:
            command += [part for item in value.split() for part in (_UV_FLAGS[name], item)]
        elif name == "no-index":
            command += ["--no-index"] if value.lower() in ("1", "true", "yes", "on") else []
        elif name in _UV_ENV:
            env.setdefault(_UV_ENV[name], value)
        elif name not in _PIP_ONLY:
            return f"pip's setting {name!r} has no uv counterpart here"
    return command, env


def _run_logged(command: list[str], out, progress, env: dict | None = None) -> int:
    """Run a command with its output into the set-up log; ``progress`` sees each line."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env)
    for line in process.stdout:
        out.write(line)
        out.flush()
        progress(line)
    return process.wait()


def _with_uv(python: str, out) -> bool:
    """Install the lock with uv (fetched into .venv/uv/ by pip); False when that can't be done."""
    uv = VENV / "uv" / ("Scripts/uv.exe" if os.name == "nt" else "bin/uv")
    if not uv.exists():
        fetch = [python, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar",
                 "off", "--target", str(uv.parent.parent), UV]
        if _run_logged(fetch, out, lambda line: None) != 0 or not uv.exists():
            print(f"[setup] could not fetch {UV}; installing with pip instead (slower)", flush=True)
            return False
    listing = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True,
                             text=True).stdout
    plan = _uv_install(str(uv), python, _pip_settings(listing))
    if isinstance(plan, str):
        print(f"[setup] {plan}; installing with pip instead (slower)", flush=True)
        return False
    command, env = plan

    def progress(line: str) -> None:
        if line.startswith("Resolved "):
            print(f"[setup] {line.split(' in ')[0].lower()}; fetching and unpacking ...", flush=True)
        elif line.startswith("Installed "):
            print(f"[setup] {line.split(' in ')[0].lower()}; compiling bytecode ...", flush=True)

    out.write(f"$ {' '.join(command)}\n")
    if _run_logged(command, out, progress, env) != 0:
        print("[setup] uv could not install the lock (its log: .venv/setup.log); installing "
              "with pip instead (slower)", flush=True)
        return False
    return True


def _with_pip(python: str, out, n: int) -> int:
    seen, step = 0, max(1, n // 4)

    def progress(line: str) -> None:
        nonlocal seen
        if line.startswith(("Collecting ", "Processing ", "Requirement already satisfied")):
            seen += 1
            if seen % step == 0 and seen < n:
                print(f"[setup] {seen}/{n} packages resolved", flush=True)
        elif line.startswith("Installing collected packages"):
            print("[setup] installing ...", flush=True)

    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
    return _run_logged([*pip, "-r", str(LOCK)], out, progress)


def _make_venv() -> None:
    """Create .venv with the locked set (torch comes from the machine's local wheels); a few
    progress lines here, the installers' full log in .venv/setup.log."""
    n = len(_pins(LOCK))
    print(f"[setup] creating {VENV.relative_to(ROOT)}/ with the {n} pinned packages of "
          f"{LOCK.name} (first run only; a few minutes)", flush=True)
    if not (VENV / "pyvenv.cfg").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    python = str(_venv_python())
    log = VENV / "setup.log"
    with log.open("w") as out:
        returncode = 0 if _with_uv(python, out) else _with_pip(python, out, n)
    if returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-5:])
        sys.exit(
            f"[setup] pip could not install {LOCK.name} into {VENV}; the end of its log:\n{tail}"
            f"[setup] full log: {log}. Check the package index is reachable, then re-run; or "
            "create the environment yourself from environment.yml (conda env create -f "
            "environment.yml) and run build.py with it."
        )
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "sightline-lib.pth").write_text(str(ROOT / "lib") + "\n")
    MARKER.write_text(_lock_digest())
    print(f"[setup] done (the installers' log: {log.relative_to(ROOT)})", flush=True)


def ensure_environment() -> None:
    """Use this interpreter if it has the pins, else (make and) re-run inside .venv."""
    inside_venv = Path(sys.prefix).resolve() == VENV.resolve()
    if _has_pins() and not (inside_venv and _stale_venv()):
        lib = str(ROOT / "lib")
        if lib not in sys.path:
            sys.path.insert(0, lib)
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (lib, os.environ.get("PYTHONPATH")) if p)
        return
    if inside_venv and not _stale_venv():
        sys.exit(f"[setup] {VENV} does not satisfy {REQUIREMENTS.name}; delete it and re-run.")
    if _stale_venv():
        _make_venv()
    os.execv(str(_venv_python()), [str(_venv_python()), __file__, *sys.argv[1:]])


def _stale_venv() -> bool:
    return not MARKER.exists() or MARKER.read_text().strip() != _lock_digest()


if __name__ == "__main__":
    ensure_environment()
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from sightline.cli import main

    sys.exit(main(sys.argv[1:], root=ROOT))
