"""The library's layout: no import circle among its modules (counting imports inside
functions and those for type checking only), no module over 600 lines, and the params
schema imports no model library."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 600


def import_graph(lib: Path) -> nx.DiGraph:
    """The modules of the packages under ``lib`` and every import between them, wherever in
    a module it stands."""
    paths = {".".join(p.relative_to(lib).with_suffix("").parts).removesuffix(".__init__"): p
             for p in lib.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(paths)
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{parent}.{base}".rstrip(".")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base
                           for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in paths:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph.add_edge(name, target)
    return graph


def test_no_import_circle_in_the_library():
    graph = import_graph(ROOT / "lib")
    assert {"sightline.config", "sightline.models.presets"} <= set(graph)
    assert graph.has_edge("sightline.models.choices", "sightline.models.presets")
    assert list(nx.simple_cycles(graph)) == []


def test_a_planted_circle_through_a_function_or_type_checking_is_found(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg import b\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                  "    from .a import f\n")
    (package / "c.py").write_text("from . import a\n")
    assert sorted(map(sorted, nx.simple_cycles(import_graph(tmp_path)))) == [["pkg.a", "pkg.b"]]


def modules_over(lib: Path, limit: int) -> dict[str, int]:
    """The Python and JavaScript modules under ``lib`` longer than ``limit`` lines, by path
    relative to the package folder."""
    lengths = {p: len(p.read_text().splitlines()) for ext in ("py", "js") for p in lib.rglob(f"*.{ext}")}
    return {str(p.relative_to(lib / "sightline")): n for p, n in lengths.items() if n > limit}


def test_no_module_in_the_library_is_over_600_lines():
    assert modules_over(ROOT / "lib", MAX_LINES) == {}


def test_a_planted_long_module_is_found(tmp_path):
    (tmp_path / "sightline" / "views").mkdir(parents=True)
    (tmp_path / "sightline" / "short.py").write_text("x = 1\n" * 600)
    (tmp_path / "sightline" / "views" / "long.js").write_text("let x;\n" * 601)
    assert modules_over(tmp_path, MAX_LINES) == {"views/long.js": 601}


def test_the_params_schema_imports_no_model_library():
    script = ("import sys; from sightline import config; "
              "config.load_params('params/demo.yaml'); "
              "print(sorted({'torch', 'timm', 'torchvision', 'transformers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "lib")}, check=True)
    assert out.stdout.strip() == "[]"
