"""Command line behind build.py (run inside the project environment)."""

from __future__ import annotations

import argparse
import ipaddress
import subprocess
import sys
from pathlib import Path

from . import config, data, execution, pipeline

COMMANDS = ("run", "test", "lab", "bench", "lock", "explore")
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
    if command == "explore":
        return _explore(rest, root)
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
    except (config.ParamsError, data.DataError, execution.ExecutionError) as error:
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


def _explore(argv: list[str], root: Path) -> int:
    """Serve the interactive explorer over a built profile's tables and map cache."""
    from . import explorer

    parser = argparse.ArgumentParser(prog="python build.py explore", description=_explore.__doc__)
    parser.add_argument("--params", type=Path, default=root / "params" / "demo.yaml",
                        help="params file of the built profile (default: params/demo.yaml)")
    parser.add_argument("--report-dir", type=Path, default=None,
                        help="where profiles' reports are (default: report/)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default: 8765)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    args = parser.parse_args(argv)
    try:
        study = explorer.Study(args.params, root=root, report_root=args.report_dir)
    except (config.ParamsError, data.DataError, explorer.NotBuilt) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not _loopback(args.host):
        print(f"warning: serving on {args.host}: the explorer has no authentication; anyone who "
              "can reach this address can read the profile's images, maps and tables.",
              file=sys.stderr)
    try:
        explorer.serve(study, host=args.host, port=args.port, open_browser=not args.no_browser)
    except KeyboardInterrupt:
        pass
    except SystemExit as exit_:  # uvicorn exits when it cannot bind
        print(f"error: could not serve on {args.host}:{args.port} (in use?); try --port",
              file=sys.stderr)
        return int(exit_.code or 1)
    print("[explore] stopped", flush=True)
    return 0


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
