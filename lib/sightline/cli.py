"""Command line behind build.py (run inside the project environment)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from . import config, data, execution, pipeline, preflight

JUPYTERLAB = "jupyterlab==4.6.6"


def main(argv: list[str], *, root: Path) -> int:
    """Dispatch ``build.py [COMMAND] ARGS``; with no command, ``run``."""
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]][0](argv[1:], root)
    return _run(argv, root)


def _commands_help() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "commands (python build.py COMMAND ...):\n" + "\n".join(lines)


def _profile_parser(root: Path, prog: str, description: str, **kwargs) -> argparse.ArgumentParser:
    """A command's parser with the options naming a profile: ``--params`` and ``--report-dir``."""
    parser = argparse.ArgumentParser(prog=prog, description=description, **kwargs)
    parser.add_argument("--params", type=Path, default=root / "params" / "demo.yaml",
                        help="params file of the study profile (default: params/demo.yaml)")
    parser.add_argument("--report-dir", type=Path, default=None,
                        help="where profiles' reports go (default: report/)")
    return parser


def _run(argv: list[str], root: Path) -> int:
    parser = _profile_parser(
        root, "python build.py [run]", "Build the report of a study profile: execute the stale "
        "notebooks with the profile's params, then stitch report/<profile>/index.html and report.pdf.",
        epilog=_commands_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="NOTEBOOK",
                        help="run only these notebooks (names without .py)")
    parser.add_argument("--force", action="store_true", help="re-run even unchanged notebooks")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="notebooks run at once, each with its share of the cores (default: 2 "
                        "where there are 2 cores or more, else 1)")
    args = parser.parse_args(argv)
    try:
        pipeline.build(args.params, root=root, report_root=args.report_dir, only=args.only,
                       force=args.force, jobs=args.jobs)
    except (config.ParamsError, data.DataError, pipeline.UsageError,
            preflight.PreflightError, execution.ExecutionError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except pipeline.BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: finished notebooks are kept; re-run to continue.", file=sys.stderr)
        return 130
    return 0


def _test(argv: list[str], root: Path) -> int:
    return subprocess.call([sys.executable, "-m", "pytest", *argv], cwd=root)


def _bench(argv: list[str], root: Path) -> int:
    status = 0
    for script in sorted((root / "benchmarks").glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        status |= subprocess.call([sys.executable, str(script), *argv], cwd=root)
    return status


def _lab(argv: list[str], root: Path) -> int:
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        print(f"[lab] installing {JUPYTERLAB} into this environment (first use only)", flush=True)
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
                               "--quiet", JUPYTERLAB, "-c", str(root / "requirements-lock.txt")])
    command = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={root / 'notebooks'}",
               "--ServerApp.ip=127.0.0.1",
               f"--MappingKernelManager.default_kernel_name={pipeline.KERNEL_NAME}", *argv]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        print("[lab] running as root: passing --allow-root to JupyterLab", flush=True)
        command.append("--allow-root")
    print("[lab] JupyterLab on notebooks/ at 127.0.0.1 (open the URL with its token printed "
          "below); Ctrl-C stops it", flush=True)
    with pipeline.project_kernel():
        try:
            return subprocess.call(command, cwd=root / "notebooks")
        except KeyboardInterrupt:
            return 130


def _lock(argv: list[str], root: Path) -> int:
    needed = _needed_distributions(root / "requirements.txt")
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
                            capture_output=True, text=True, check=True).stdout
    lines = [line for line in frozen.splitlines()
             if "==" in line and canonicalize_name(line.split("==", 1)[0]) in needed]
    (root / "requirements-lock.txt").write_text("\n".join(lines) + "\n")
    print(f"wrote requirements-lock.txt ({len(lines)} packages)")
    return 0


def _explore(argv: list[str], root: Path) -> int:
    """Serve the interactive explorer over a built profile's tables and map cache."""
    from . import explorer

    parser = _profile_parser(root, "python build.py explore", _explore.__doc__)
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


def _models(argv: list[str], root: Path) -> int:
    """List the model presets and the sources a params `models:` entry can use."""
    argparse.ArgumentParser(prog="python build.py models", description=_models.__doc__
                            ).parse_args(argv)
    from . import models

    print("presets (models: - {key: KEY, weights: pretrained | random, size: base | tiny}):")
    for row in models.preset_table():
        print(f"  {row['key']:<16} {row['source']}\n"
              f"  {'':<16} readout {row['readout']}; methods {row['methods']}; input "
              f"{row['input']}\n  {'':<16} {row['notes']}")
    print("\nspecs (models: - {key: NEW_KEY, source: SOURCE, ...}; readout, methods and "
          "preprocessing are read off the built model):")
    for source, needs in models.SOURCES.items():
        print(f"  {source:<12} {needs}")
    print(f"  {'any':<12} {models.CHECKPOINT_HELP}; target_layer: the Grad-CAM layer (dotted "
          "name) and target_layout: nchw | nhwc | tokens; input: {size, resize: squash | "
          "SHORTEST_EDGE, crop_pct, interpolation, mean, std}")
    return 0


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _needed_distributions(requirements: Path) -> set[str]:
    """Canonical names of requirements.txt's packages and everything they pull in, installed here;
    extras installed on first use (JupyterLab, Ray) stay out unless the project needs them anyway."""
    lines = (line.split("#", 1)[0].strip() for line in requirements.read_text().splitlines())
    todo = [Requirement(line) for line in lines if line]
    seen: set[tuple[str, frozenset[str]]] = set()
    needed: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            distribution = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            continue
        needed.add(name)
        for dependency in map(Requirement, distribution.requires or []):
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": extra})
                                                for extra in requirement.extras or {""}):
                todo.append(dependency)
    return needed


Command = Callable[[list[str], Path], int]
# The one list of subcommands: build.py's dispatch and its --help both read it.
COMMANDS: dict[str, tuple[Command, str]] = {
    "run": (_run, "build the report of a params profile (the default command)"),
    "test": (_test, "run the test suite; arguments go to pytest"),
    "lab": (_lab, "JupyterLab on notebooks/ with the project kernel; arguments go to JupyterLab"),
    "bench": (_bench, "run benchmarks/bench_*.py [--quick]"),
    "lock": (_lock, "rewrite requirements-lock.txt from this environment"),
    "explore": (_explore, "serve the interactive explorer over a built profile's tables and maps"),
    "models": (_models, "list the model presets and the sources a models: entry can use"),
}
