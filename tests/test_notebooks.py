"""The notebooks as a user meets them: run as is (JupyterLab or the repo root), rebuilt
reproducibly, and served by ``build.py lab``.

One small demo project per test session (a copy of the notebooks, a reduced
``params/demo.yaml``, the demo data generated once) keeps this affordable.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import jupytext
import pytest
import yaml
from nbclient import NotebookClient
from packaging.utils import canonicalize_name

from sightline import config, data, pipeline
from sightline import notebook_defaults as defaults

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = [p.stem for p in sorted((ROOT / "notebooks").glob("*.py"))]


def _small_demo(demo_params) -> dict:
    """params/demo.yaml at a test's size: same keys and paths, fewer images and models."""
    params = demo_params(["dinov2", "siglip", "resnet50"],
                         probes={"dinov2": ["linear_probe"], "resnet50": ["linear_probe", "full"]})
    params["dataset"].update(n_annotated=8, n_pool=24)
    params["extraction"]["batch_size"] = 4
    params["metrics"]["percentiles"] = [50, 90]
    params["stats"] = {"n_boot": 200}
    params["heads"] = {"min_boxes": 2, "n_permutations": 50}
    params["report"] = {"gallery_size": 1, "examples": 4, "split_by_correct": True}
    return params


def _new_project(root: Path, params: dict) -> Path:
    (root / "notebooks").mkdir(parents=True)
    (root / "params").mkdir()
    (root / "lib").mkdir()
    (root / "lib" / "sightline").symlink_to(ROOT / "lib" / "sightline")
    for source in (ROOT / "notebooks").glob("*.py"):
        shutil.copy(source, root / "notebooks" / source.name)
    shutil.copy(ROOT / "notebooks" / "jupytext.toml", root / "notebooks" / "jupytext.toml")
    (root / "params" / "demo.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory, demo_params) -> Path:
    """A project with the (small) demo data generated, as `python build.py` leaves it."""
    root = _new_project(tmp_path_factory.mktemp("demo") / "project", _small_demo(demo_params))
    pipeline.prepare_dataset(config.load_params(root / "params" / "demo.yaml", base=root))
    return root


def _run_as_is(notebook: Path, cwd: Path, cells: int | None = None) -> None:
    """Execute a notebook with its own default parameter cell, the kernel started in ``cwd``."""
    nb = jupytext.read(notebook)
    if cells is not None:
        nb.cells = nb.cells[:cells]
    with pipeline.project_kernel():
        NotebookClient(nb, kernel_name=pipeline.KERNEL_NAME, timeout=600,
                       resources={"metadata": {"path": str(cwd)}}).execute()


@pytest.mark.slow
@pytest.mark.parametrize("where", ["notebooks", "root"])
def test_every_notebook_runs_with_its_default_parameters(demo_project, where):
    cwd = demo_project / "notebooks" if where == "notebooks" else demo_project
    for name in NOTEBOOKS:
        _run_as_is(demo_project / "notebooks" / f"{name}.py", cwd)
    tables = demo_project / "report" / "demo" / "interactive" / "tables"
    assert {"boxes.csv", "scores.parquet", "heads.parquet"} <= {p.name for p in tables.iterdir()}
    assert sorted(p.name for p in (demo_project / "notebooks").iterdir()) == sorted(
        [f"{name}.py" for name in NOTEBOOKS] + ["jupytext.toml"]
    )  # nothing written relative to the kernel's working directory
    assert (demo_project / "cache").is_dir()


def test_defaults_come_from_the_demo_params_resolved_against_the_project_root(
    demo_project, monkeypatch
):
    monkeypatch.chdir(demo_project / "notebooks")
    demo = config.load_params(demo_project / "params" / "demo.yaml", base=demo_project)
    assert defaults.project_root() == demo_project.resolve()
    assert defaults.default("dataset") == demo.model_dump(mode="json")["dataset"]
    assert defaults.default("dataset")["root"] == str(demo_project.resolve() / "data/synthetic-demo")
    monkeypatch.setenv("SIGHTLINE_BUILD", "1")  # a build's own value (it injects it anyway)
    assert defaults.default("tables_dir") == str(demo_project.resolve() / "report/demo/tables")
    monkeypatch.delenv("SIGHTLINE_BUILD")
    assert defaults.default("models") == [m.model_dump(mode="json") for m in demo.models]


def test_an_interactive_run_writes_beside_the_builds_tables_and_says_where(
    demo_project, monkeypatch, capsys
):
    monkeypatch.chdir(demo_project / "notebooks")
    monkeypatch.delenv("SIGHTLINE_BUILD", raising=False)
    build = demo_project / "report" / "demo" / "tables"
    build.mkdir(parents=True, exist_ok=True)
    (build / "scores.csv").write_text("made by the build\n")
    folder = Path(defaults.default("tables_dir"))
    assert folder == demo_project.resolve() / "report" / "demo" / "interactive" / "tables"
    line = capsys.readouterr().out
    assert str(folder) in line and str(build.resolve()) in line and "left as the build" in line
    assert (folder / "scores.csv").read_text() == "made by the build\n"  # inputs it may read
    (folder / "scores.csv").write_text("an interactive run\n")
    defaults.default("tables_dir")  # a second notebook: what the first wrote stays
    assert (folder / "scores.csv").read_text() == "an interactive run\n"
    assert (build / "scores.csv").read_text() == "made by the build\n"


def test_every_notebook_names_a_kernel_jupyter_resolves_outside_a_build():
    from jupyter_client.kernelspec import KernelSpecManager

    for name in NOTEBOOKS:
        assert jupytext.read(ROOT / "notebooks" / f"{name}.py").metadata["kernelspec"] == \
            pipeline.KERNEL_SPEC, name
    spec = KernelSpecManager().get_kernel_spec(pipeline.KERNEL_NAME)  # no project_kernel here
    assert spec.language == "python"


def test_papermill_runs_a_jupytext_notebook_with_no_kernel_argument(demo_project, tmp_path):
    source = tmp_path / "00_data.ipynb"
    jupytext.write(jupytext.read(demo_project / "notebooks" / "00_data.py"), source)
    out = tmp_path / "out.ipynb"
    env = {k: v for k, v in os.environ.items() if k not in ("SIGHTLINE_BUILD", "JUPYTER_PATH")}
    result = subprocess.run([sys.executable, "-m", "papermill", str(source), str(out),
                             "--cwd", str(demo_project / "notebooks")],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    executed = json.loads(out.read_text())
    assert executed["metadata"]["kernelspec"]["name"] == pipeline.KERNEL_NAME
    texts = json.dumps([c.get("outputs", []) for c in executed["cells"]])
    assert "annotated images" in texts and "Interactive run: tables go to" in texts
    assert (demo_project / "report" / "demo" / "interactive" / "tables" / "boxes.csv").exists()


def test_notebook_before_the_build_says_to_run_the_build(tmp_path, monkeypatch, demo_params):
    root = _new_project(tmp_path / "fresh", _small_demo(demo_params))
    monkeypatch.chdir(root / "notebooks")
    with pytest.raises(data.DataError) as error:
        data.load_dataset(defaults.default("dataset"))
    assert "run `python build.py` first" in str(error.value)
    assert "zenodo" not in str(error.value).lower() and "download" not in str(error.value)


def test_damaged_generated_data_is_not_used_and_never_points_at_zenodo(tmp_path, monkeypatch,
                                                                       demo_params):
    root = _new_project(tmp_path / "damaged", _small_demo(demo_params))
    params = config.load_params(root / "params" / "demo.yaml", base=root)
    pipeline.prepare_dataset(params)
    image = sorted((params.dataset.root / "images").iterdir())[0]
    image.write_bytes(image.read_bytes()[:400])  # truncated, as a broken copy leaves it
    monkeypatch.chdir(root)
    with pytest.raises(data.DataError) as error:
        data.load_dataset(defaults.default("dataset"))
    message = str(error.value)
    assert image.name in message and "run `python build.py` first" in message
    assert "zenodo" not in message.lower()
    with pytest.raises(data.DataError) as error:  # the plain reader, too, sends to the build
        data.load_image(image)
    assert "zenodo" not in str(error.value).lower() and "python build.py" in str(error.value)
    pipeline.prepare_dataset(params)  # the build regenerates it
    assert data.verify_generated(params.dataset.root) is None


_SUMMARY = re.compile(r"<table class='summary'>.*?</table>|report made [0-9: -]+", re.S)


@pytest.mark.slow
def test_two_builds_give_identical_notebooks_and_html(demo_project):
    params = demo_project / "params" / "demo.yaml"
    first = pipeline.build(params, root=demo_project, force=True)
    out = first.profile_dir
    before = {p.name: p.read_bytes() for p in (out / "notebooks").glob("*.ipynb")}
    html_before = _SUMMARY.sub("", (out / "index.html").read_text())
    pipeline.build(params, root=demo_project, force=True)
    after = {p.name: p.read_bytes() for p in (out / "notebooks").glob("*.ipynb")}
    assert sorted(before) == [f"{name}.ipynb" for name in NOTEBOOKS]
    for name in before:
        assert after[name] == before[name], _first_difference(name, before[name], after[name])
    assert _SUMMARY.sub("", (out / "index.html").read_text()) == html_before
    ids = [c["id"] for c in json.loads(before["q1_alignment.ipynb"])["cells"]]
    assert ids[:2] == ["q1_alignment-0", "q1_alignment-1"]


def _first_difference(name: str, a: bytes, b: bytes) -> str:
    """Where two executed notebooks first differ: the cell and the differing text."""
    cells_a, cells_b = json.loads(a)["cells"], json.loads(b)["cells"]
    for index, (x, y) in enumerate(zip(cells_a, cells_b, strict=False)):
        if x != y:
            text_a, text_b = json.dumps(x), json.dumps(y)
            at = next(i for i, (p, q) in enumerate(zip(text_a, text_b, strict=False)) if p != q)
            return (f"{name} cell {index} differs: {text_a[at - 150:at + 80]!r} "
                    f"vs {text_b[at:at + 80]!r}")
    return f"{name} differs outside its cells"


def test_a_killed_build_leaves_no_running_notebooks_after_a_rerun(demo_project):
    params = demo_project / "params" / "demo.yaml"
    pipeline.build(params, root=demo_project, only=["00_data"])
    leftover = demo_project / "report" / "demo" / "notebooks" / "q3_heads.running.ipynb"
    leftover.write_text("{}")  # what a SIGKILL during q3 leaves
    pipeline.build(params, root=demo_project, only=["00_data"])
    assert not leftover.exists()


def test_unknown_only_is_a_usage_error_naming_the_notebooks():
    result = subprocess.run([sys.executable, str(ROOT / "build.py"), "--only", "nosuch"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert "nosuch" in result.stderr and ", ".join(NOTEBOOKS) in result.stderr


def test_help_lists_every_subcommand():
    from sightline import cli

    result = subprocess.run([sys.executable, str(ROOT / "build.py"), "--help"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0
    for name in cli.COMMANDS:
        assert re.search(rf"^\s+{name}\s+\S", result.stdout, re.M), name


def test_lock_keeps_every_needed_package_and_drops_lab_only_extras():
    from sightline import cli

    needed = cli._needed_distributions(ROOT / "requirements.txt")
    assert {"jupyterlab-pygments", "nbconvert", "ipykernel", "torch"} <= needed
    assert "jupyterlab" not in needed
    locked = {canonicalize_name(line.split("==")[0])
              for line in (ROOT / "requirements-lock.txt").read_text().split()}
    assert needed - {"pip", "setuptools", "wheel"} <= locked  # venv brings those three


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str, method: str = "GET", body: dict | None = None) -> dict:
    request = urllib.request.Request(
        url, method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


@pytest.mark.slow
def test_lab_serves_notebooks_on_localhost_with_the_project_kernel(demo_project, tmp_path):
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        from sightline import cli

        install = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             cli.JUPYTERLAB, "-c", str(ROOT / "requirements-lock.txt")],
            capture_output=True, text=True)
        if install.returncode != 0:
            pytest.skip(f"JupyterLab cannot be installed here: {install.stderr[-300:]}")
    port = _free_port()
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "PYTHONPATH": str(ROOT / "lib")}
    code = ("import sys; from pathlib import Path; from sightline.cli import main; "
            "sys.exit(main(sys.argv[2:], root=Path(sys.argv[1])))")
    lab = subprocess.Popen(
        [sys.executable, "-c", code, str(demo_project), "lab", "--no-browser", f"--port={port}",
         "--ServerApp.port_retries=0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True,
    )
    lines, url = [], None
    try:
        deadline = time.time() + 120
        while url is None and time.time() < deadline and lab.poll() is None:
            line = lab.stdout.readline()
            lines.append(line)
            match = re.search(rf"(http://127\.0\.0\.1:{port}/lab\?token=(\w+))", line)
            url = match and match.group(1)
        assert url, "no URL with a token:\n" + "".join(lines)
        token = url.rsplit("=", 1)[1]
        base = f"http://127.0.0.1:{port}"
        while True:  # the URL is printed a moment before the server listens
            try:
                assert _get(f"{base}/api/status", token)["kernels"] == 0
                break
            except urllib.error.URLError:
                assert time.time() < deadline, "the server does not answer on 127.0.0.1"
                time.sleep(0.5)
        listing = _get(f"{base}/api/contents", token)
        assert {"00_data.py", "q1_alignment.py"} <= {c["name"] for c in listing["content"]}
        session = _get(f"{base}/api/sessions", token, "POST",  # what opening a notebook does
                       {"path": "00_data.py", "type": "notebook", "kernel": {}})
        kernel = session["kernel"]
        assert kernel["name"] == pipeline.KERNEL_NAME  # the project kernel is the default
        _first_cells_run_in(tmp_path / "runtime", kernel["id"], demo_project)
        _jupytext_pairs_the_notebook(base, token, demo_project)
    finally:
        os.killpg(lab.pid, signal.SIGINT)
        try:
            lab.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait()


def _first_cells_run_in(runtime: Path, kernel_id: str, root: Path) -> None:
    """Run 00_data's parameters and set-up cells in the server's kernel (started in notebooks/)."""
    from jupyter_client import BlockingKernelClient

    client = BlockingKernelClient(connection_file=str(runtime / f"kernel-{kernel_id}.json"))
    client.load_connection_file()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        nb = jupytext.read(root / "notebooks" / "00_data.py")
        code = [c.source for c in nb.cells if c.cell_type == "code"][:2]
        code.append("import os; print('cwd', os.getcwd()); print('samples', len(wc.samples))")
        outputs = []
        for source in code:
            reply = client.execute_interactive(
                source, timeout=120, output_hook=lambda m: outputs.append(m["content"]))
            assert reply["content"]["status"] == "ok", (source, outputs)
        text = "".join(o.get("text", "") for o in outputs)
        assert f"cwd {root / 'notebooks'}" in text and "samples 8" in text
    finally:
        client.stop_channels()


def _jupytext_pairs_the_notebook(base: str, token: str, root: Path) -> None:
    """Saving the notebook from Lab (the .py opened as a notebook, or the .ipynb) edits the .py."""
    py = root / "notebooks" / "00_data.py"
    original = py.read_text()
    try:
        for name, text in (("00_data.py", "Edited in Lab."), ("00_data.ipynb", "Edited again.")):
            model = _get(f"{base}/api/contents/{name}?type=notebook&content=1", token)
            model["content"]["cells"].append(
                {"cell_type": "markdown", "metadata": {}, "source": text, "id": f"edit-{len(text)}"})
            _get(f"{base}/api/contents/{name}", token, "PUT",
                 {"type": "notebook", "format": "json", "content": model["content"]})
            assert py.read_text().rstrip().endswith(f"# {text}"), name
            assert (root / "notebooks" / "00_data.ipynb").exists()  # the paired copy
        header = jupytext.read(py).metadata  # the header keeps the kernelspec and sightline's keys
        assert header["kernelspec"] == pipeline.KERNEL_SPEC and "sightline" in header
        assert py.read_text().split("# ---")[1] == original.split("# ---")[1]
    finally:
        py.write_text(original)
        (root / "notebooks" / "00_data.ipynb").unlink(missing_ok=True)
