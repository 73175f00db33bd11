"""Command line behind build.py (run inside the project environment)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from . import config, data, pipeline

COMMANDS = ("run", "test", "lab", "bench", "lock")
JUPYTERLAB = "jupyterlab==4.6.6"


def main(argv: list[str], *, root: Path) -> int:
    command = argv[0] if argv and argv[0] in COMMANDS else "run"
    rest = argv[1:] if argv and argv[0] in COMMANDS else argv
    if command == "test":
        return subprocess.call([sys.executable, "-m", "pytest", *rest], cwd=root)
    if command == "bench":
        return _bench(rest, root)
    if command == "lab":
        return _lab(root)
    if command == "lock":
        return _lock(root)
    return _run(rest, root)


def _run(argv: list[str], root: Path) -> int:
    parser = argparse.ArgumentParser(prog="python build.py", description=__doc__)
    parser.add_argument(
        "--params",
        type=Path,
        default=root / "params" / "demo.yaml",
        help="params file of the study profile (default: params/demo.yaml)",
    )
    parser.add_argument(
        "--only", nargs="+", metavar="NOTEBOOK", help="run only these notebooks (names without .py)"
    )
    parser.add_argument("--force", action="store_true", help="re-run even unchanged notebooks")
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=None,
        help="where profiles' reports go (default: report/)",
    )
    args = parser.parse_args(argv)
    try:
        pipeline.build(
            args.params, root=root, report_root=args.report_dir, only=args.only, force=args.force
        )
    except (config.ParamsError, data.DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except pipeline.BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: finished notebooks are kept; re-run to continue.", file=sys.stderr)
        return 130
    return 0


def _bench(argv: list[str], root: Path) -> int:
    status = 0
    for script in sorted((root / "benchmarks").glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        status |= subprocess.call([sys.executable, str(script), *argv], cwd=root)
    return status


def _lab(root: Path) -> int:
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        print(f"[lab] installing {JUPYTERLAB} into this environment", flush=True)
        subprocess.check_call([sys.executable, "-m", "pip", "install", JUPYTERLAB])
    return subprocess.call(
        [sys.executable, "-m", "jupyter", "lab", str(root / "notebooks")], cwd=root
    )


def _lock(root: Path) -> int:
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = [line for line in frozen.splitlines() if not line.startswith(("-e", "jupyterlab"))]
    (root / "requirements-lock.txt").write_text("\n".join(lines) + "\n")
    print(f"wrote requirements-lock.txt ({len(lines)} packages)")
    return 0
