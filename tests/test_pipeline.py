"""The build: incremental notebook execution, failure handling and the stitched report.

Runs on a throw-away project with two small notebooks (``b`` needs ``a``) so that the
rules are tested quickly; the real notebooks are built end to end in test_end_to_end.
"""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from sightline import pipeline

ROOT = Path(__file__).resolve().parents[1]

NOTEBOOK_A = '''# ---
# jupyter:
#   sightline:
#     needs: []
# ---

# %% [markdown]
# # Notebook A
# ## Counting

# %% tags=["parameters"]
dataset = {}
tables_dir = "."

# %%
import pathlib, json
n = len(json.loads((pathlib.Path(dataset["root"]) / "building_parts.json").read_text())["annotations"])
pathlib.Path(tables_dir, "a.csv").write_text(f"n\\n{n}\\n")
print("images", n)
'''

NOTEBOOK_B = '''# ---
# jupyter:
#   sightline:
#     needs: [a]
# ---

# %% [markdown]
# # Notebook B

# %% tags=["parameters"]
metrics = {}
tables_dir = "."

# %%
import pathlib
n = int(pathlib.Path(tables_dir, "a.csv").read_text().split()[1])
pathlib.Path(tables_dir, "b.csv").write_text(f"p,n\\n{metrics['percentiles'][0]},{n}\\n")
'''


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    (root / "notebooks").mkdir(parents=True)
    (root / "params").mkdir()
    (root / "lib").mkdir()
    (root / "lib" / "sightline").symlink_to(ROOT / "lib" / "sightline")
    (root / "notebooks" / "a.py").write_text(NOTEBOOK_A)
    (root / "notebooks" / "b.py").write_text(NOTEBOOK_B)
    params = {
        "profile": "toy", "dataset": {"kind": "synthetic", "root": "data/toy", "n_annotated": 4,
                                      "n_pool": 0},
        "models": [{"key": "dinov2", "weights": "random", "size": "tiny"}],
        "metrics": {"percentiles": [90]},
    }
    path = root / "params" / "toy.yaml"
    path.write_text(yaml.safe_dump(params))
    return root, path, params


def _edit(path, params, **changes):
    for section, value in changes.items():
        params[section] = {**params[section], **value}
    path.write_text(yaml.safe_dump(params))


def test_incremental_build(project, capsys):
    root, path, params = project
    first = pipeline.build(path, root=root)
    assert first.executed == ["a", "b"]
    out = first.profile_dir
    assert (out / "tables" / "b.csv").read_text() == "p,n\n90.0,4\n"
    assert (out / "notebooks" / "a.ipynb").exists()
    html = (out / "index.html").read_text()
    assert "Notebook A" in html and "Notebook B" in html and "Run summary" in html
    assert 'href="#a-Counting"' in html and 'id="a-Counting"' in html  # table of contents
    assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"

    capsys.readouterr()
    second = pipeline.build(path, root=root)
    assert second.executed == [] and second.cached == ["a", "b"]
    assert "nothing changed: no notebook executed" in capsys.readouterr().out

    _edit(path, params, metrics={"percentiles": [80], "headline_percentile": 80})
    assert pipeline.build(path, root=root).executed == ["b"]
    assert (out / "tables" / "b.csv").read_text().startswith("p,n\n80.0")

    _edit(path, params, dataset={"n_annotated": 5})  # new data: a re-runs, and b needs a
    assert pipeline.build(path, root=root).executed == ["a", "b"]
    assert (out / "tables" / "b.csv").read_text().endswith(",5\n")

    assert pipeline.build(path, root=root, only=["a"], force=True).executed == ["a"]
    with pytest.raises(pipeline.UsageError, match="no notebook named zz; the notebooks are: a, b"):
        pipeline.build(path, root=root, only=["zz"])


def test_only_also_runs_stale_notebooks_it_needs(project):
    root, path, params = project
    assert pipeline.build(path, root=root, only=["b"]).executed == ["a", "b"]
    assert pipeline.build(path, root=root, only=["b"]).executed == []
    _edit(path, params, dataset={"n_annotated": 6})
    assert pipeline.build(path, root=root, only=["a"]).executed == ["a"]
    assert pipeline.build(path, root=root, only=["b"]).executed == ["b"]


def test_failing_notebook_stops_with_cell_and_error_and_keeps_outputs(project):
    root, path, _ = project
    good = pipeline.build(path, root=root)
    before = (good.profile_dir / "notebooks" / "b.ipynb").read_bytes()
    source = (root / "notebooks" / "b.py").read_text()
    (root / "notebooks" / "b.py").write_text(source + "\n# %%\nraise ValueError('planted failure')\n")
    with pytest.raises(pipeline.BuildError) as error:
        pipeline.build(path, root=root)
    message = str(error.value)
    assert "notebook b failed in cell" in message and "ValueError: planted failure" in message
    failed = good.profile_dir / "notebooks" / "b.failed.ipynb"
    assert failed.exists() and str(failed) in message
    assert (good.profile_dir / "notebooks" / "b.ipynb").read_bytes() == before
    stamps = json.loads((good.profile_dir / "stamps.json").read_text())
    assert "b" in stamps  # the last good record stays; the failed run did not overwrite it
    (root / "notebooks" / "b.py").write_text(source)
    assert pipeline.build(path, root=root).executed == []  # back to the good state


def test_a_need_must_run_earlier(project):
    root, path, _ = project
    (root / "notebooks" / "b.py").rename(root / "notebooks" / "0b.py")
    with pytest.raises(pipeline.BuildError, match="needs 'a', which runs later"):
        pipeline.build(path, root=root)


def test_notebook_parameter_must_exist(project):
    root, path, _ = project
    nb = root / "notebooks" / "a.py"
    nb.write_text(nb.read_text().replace('tables_dir = "."', 'tables_dir = "."\nwidgets = 3'))
    with pytest.raises(pipeline.BuildError, match="parameter 'widgets'"):
        pipeline.build(path, root=root)


def test_missing_dataset_is_a_clear_error(project):
    root, path, params = project
    params["dataset"] = {"kind": "wikichurches", "root": str(root / "nowhere")}
    path.write_text(yaml.safe_dump(params))
    from sightline import data

    with pytest.raises(data.DataError, match="zenodo"):
        pipeline.build(path, root=root)
    shutil.rmtree(root / "report", ignore_errors=True)


def test_a_profile_without_a_section_skips_the_notebooks_that_read_it(project, tmp_path):
    """A Shared-Interest-only profile: no WikiChurches `dataset`, so notebooks a and b (which
    read it) are skipped; a notebook reading `shared_interest` runs on its own data."""
    root, path, _ = project
    counting = NOTEBOOK_A.splitlines()[-3]  # the line that reads the WikiChurches dataset
    notebook_c = (NOTEBOOK_A.replace("# Notebook A", "# Notebook C")
                  .replace("dataset = {}", "shared_interest = {}")
                  .replace(counting, 'n = len(shared_interest["models"])'))
    (root / "notebooks" / "c.py").write_text(notebook_c)
    only_si = {"profile": "si", "shared_interest": {
        "dataset": {"kind": "synthetic_human_attention", "root": str(tmp_path / "si"),
                    "per_subject": 1},
        "models": [{"key": "resnet101", "weights": "random", "size": "tiny"}]}}
    path.write_text(yaml.safe_dump(only_si))
    result = pipeline.build(path, root=root)
    assert result.executed == ["c"]
    assert (result.profile_dir / "tables" / "a.csv").read_text() == "n\n1\n"
    assert (tmp_path / "si" / "Image" / "ImageNet" / "human_attention_mask" / "dog1.jpg").exists()


def _graph(**needs):
    return [pipeline.Notebook(name, Path(f"{name}.py"), [], list(deps)) for name, deps in
            needs.items()]


def test_schedule_runs_independent_notebooks_at_once_and_needs_in_order():
    import threading

    notebooks = _graph(a=[], b=["a"], c=[])
    both_running = threading.Barrier(2, timeout=20)  # a and c must run at the same time
    log = []

    def run(nb, injected, output):
        log.append(f"start {nb.name}")
        if nb.name in ("a", "c"):
            both_running.wait()
        log.append(f"end {nb.name}")
        return nb.name.upper()

    todo = [(nb, {}, Path()) for nb in notebooks]
    assert dict(pipeline.schedule(todo, 2, run)) == {"a": "A", "b": "B", "c": "C"}
    assert log.index("start b") > log.index("end a")
    both_running = threading.Barrier(2, timeout=1)
    with pytest.raises(threading.BrokenBarrierError):  # one at a time: c never meets a
        list(pipeline.schedule(todo, 1, run))


def test_schedule_lets_running_notebooks_finish_after_a_failure_then_raises():
    import threading

    notebooks = _graph(a=[], b=["a"], c=[])
    failed = threading.Event()

    def run(nb, injected, output):
        if nb.name == "a":
            failed.set()
            raise ValueError("planted")
        assert failed.wait(20)  # c is still running when a fails
        return 1.0

    ended = []
    with pytest.raises(ValueError, match="planted"):
        for name, _ in pipeline.schedule([(nb, {}, Path()) for nb in notebooks], 2, run):
            ended.append(name)
    assert ended == ["c"]  # b (needs a) never started


def test_schedule_raises_on_a_cycle_of_needs():
    todo = [(nb, {}, Path()) for nb in _graph(a=["b"], b=["a"], c=[])]
    with pytest.raises(pipeline.BuildError, match="a, b form a cycle"):
        list(pipeline.schedule(todo, 2, lambda nb, injected, output: 1.0))


def test_longest_chain_starts_first_and_is_the_critical_path():
    notebooks = _graph(a=[], b=[], q1=[], q2=["q1"], q3=["q1"])
    seconds = {"a": 10.0, "b": 50.0, "q1": 30.0, "q2": 5.0, "q3": 15.0}
    records = {name: {"seconds": s} for name, s in seconds.items()}
    assert pipeline.longest_first(notebooks, records) == ["b", "q1", "q3", "a", "q2"]
    assert pipeline.longest_first(notebooks, {}) == ["q1", "a", "b", "q2", "q3"]  # 1 s each
    assert pipeline.critical_path(notebooks, seconds) == (["b"], 50.0)
    assert pipeline.critical_path(notebooks, {**seconds, "b": 40.0}) == (["q1", "q3"], 45.0)


def test_kernels_share_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(pipeline, "_cores", lambda: 4)
    assert pipeline.kernel_threads(2) == {"OMP_NUM_THREADS": "2"}
    assert pipeline.kernel_threads(8) == {"OMP_NUM_THREADS": "1"}
    assert pipeline.default_jobs() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the caller's setting wins
    assert pipeline.kernel_threads(2) == {"OMP_NUM_THREADS": "3"}


MEETS = '''# ---
# jupyter:
#   sightline:
#     needs: []
# ---

# %% tags=["parameters"]
tables_dir = "."

# %%
import os, pathlib, time
tables = pathlib.Path(tables_dir)
(tables / "{me}.txt").write_text(os.getcwd())
deadline = time.monotonic() + 120
while not (tables / "{other}.txt").exists():  # only met if both kernels run at once
    assert time.monotonic() < deadline, "{other} never ran beside {me}"
    time.sleep(0.1)
'''


def test_two_notebooks_run_at_once_in_the_project_root(project):
    root, path, _ = project
    for name in ("a", "b"):
        (root / "notebooks" / f"{name}.py").unlink()
    (root / "notebooks" / "x.py").write_text(MEETS.format(me="x", other="y"))
    (root / "notebooks" / "y.py").write_text(MEETS.format(me="y", other="x"))
    result = pipeline.build(path, root=root, jobs=2)
    assert result.executed == ["x", "y"]
    assert (result.profile_dir / "tables" / "x.txt").read_text() == str(root)
    assert not list(root.glob("kernel-ipc-*"))  # the kernels' sockets live elsewhere
