"""Scale-out: tasks in-process, in local processes or on a local Ray runtime give the same
results, bit for bit.

Ray is an optional extra: the ``ray`` fixture installs the pinned version on first use,
exactly as ``engine: ray`` does in a build (CI reaches PyPI).
"""

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sightline import config, data, execution, extract, pipeline, synthetic
from sightline.config import Execution, ModelChoice

ROOT = Path(__file__).resolve().parents[1]
RAY2 = Execution(engine="ray", workers=2)


@pytest.fixture(scope="module")
def ray():
    return execution.ensure_ray()


def test_execution_defaults_to_local_and_names_bad_values(tmp_path):
    params = yaml.safe_load((ROOT / "params" / "demo.yaml").read_text())
    assert params.pop("execution") == {"engine": "processes", "workers": 2}  # the demo's
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(params))
    assert config.load_params(path).execution == Execution(engine="local", address=None)
    for section, expected in [
        ({"engine": "rai"}, "Did you mean 'ray'"),
        ({"address": "ray://head"}, "execution.address"),
        ({"gpus_per_task": -1}, "execution.gpus_per_task"),
        ({"worker": 2}, "Did you mean 'workers'"),
    ]:
        path.write_text(yaml.safe_dump({**params, "execution": section}))
        with pytest.raises(config.ParamsError, match=expected):
            config.load_params(path)
    for address in ("auto", "ray://10.0.0.5:10001", "head-node.cluster:6379"):
        assert Execution(engine="ray", address=address).address == address


def test_local_tasks_run_in_order_with_the_asked_threads():
    before = torch.get_num_threads()
    local = Execution(cpus_per_task=1)
    assert execution.run_tasks(pow, [(2, 3), (3, 2), (5, 0)], execution=local, desc="t") == [8, 9, 1]
    assert execution.run_tasks(torch.get_num_threads, [()], execution=local, desc="t") == [1]
    assert torch.get_num_threads() == before


def test_process_tasks_run_in_order_with_the_asked_threads_and_errors_surface(tmp_path):
    processes = Execution(engine="processes", workers=2, cpus_per_task=1)
    tasks = [(2, 3), (3, 2), (5, 0)]
    assert execution.run_tasks(pow, tasks, execution=processes, desc="t") == [8, 9, 1]
    assert execution.run_tasks(torch.get_num_threads, [(), ()], execution=processes,
                               desc="t") == [1, 1]
    missing = tmp_path / "cache" / ".sightline-probe-gone"
    with pytest.raises(execution.ExecutionError, match=r"extraction.cache_dir .*not visible"):
        execution.run_tasks(execution.require_shared, [(missing, "extraction.cache_dir")] * 2,
                            execution=processes, desc="t")
    with pytest.raises(execution.ExecutionError, match=r"worker process died during 'dying'"):
        execution.run_tasks(os._exit, [(1,), (1,)], execution=processes, desc="dying")


def test_ray_tasks_match_local_and_task_errors_surface_as_themselves(ray, tmp_path):
    assert execution.run_tasks(pow, [(2, 3), (3, 2), (5, 0)], execution=RAY2, desc="t") == [8, 9, 1]
    assert not ray.is_initialized()  # shut down after the tasks
    with execution.shared_dir(tmp_path / "cache") as probe:
        assert probe.exists()
    assert not probe.exists()
    # a worker that cannot see the shared directory: the task's own error, naming it
    with pytest.raises(execution.ExecutionError, match=r"extraction.cache_dir .*not visible"):
        execution.run_tasks(execution.require_shared, [(probe, "extraction.cache_dir")],
                            execution=RAY2, desc="t")
    assert not ray.is_initialized()
    # a GPU request no node can meet is an error now, not a wait for ever
    with pytest.raises(execution.ExecutionError, match=r"1 GPU\(s\) \(execution.gpus_per_task\)"):
        execution.run_tasks(pow, [(2, 3)], execution=Execution(engine="ray", gpus_per_task=1),
                            desc="t")
    assert not ray.is_initialized()


def _samples(tmp_path, n=8):
    root = synthetic.make_synthetic(tmp_path / "ds", n_annotated=n, n_pool=0, seed=3)
    return data.load_wikichurches(root).samples


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_the_maps_are_identical(ray, tmp_path):
    samples = _samples(tmp_path)
    choice = ModelChoice(key="dinov2", weights="random", size="tiny")
    reference = extract.store_for(tmp_path / "local", "ds", "dinov2-tiny", "frozen")
    assert extract.extract_model(samples, choice, reference, batch_size=1, device="cpu",
                                 progress=False) == len(samples)

    store = extract.store_for(tmp_path / "ray", "ds", "dinov2-tiny", "frozen")
    marker = tmp_path / "first-attempt"

    def dies_after_its_first_shard(task, progress, marker):
        """Shard 0's first attempt writes its first batch, then its worker process dies."""
        import dataclasses
        import os

        if task.shard == 0 and not marker.exists():
            marker.touch()
            extract.extract_shard(dataclasses.replace(task, samples=task.samples[:1]), progress)
            marker.with_suffix(".killed").touch()
            os._exit(1)
        return extract.extract_shard(task, progress)

    with execution.shared_dir(store.path.parent) as probe:
        tasks = [
            extract.ShardTask(extract.MapJob(choice, store), tuple(samples[i : i + 2]), shard, 1, "cpu", 0,
                              extract.code_version(), probe)
            for shard, i in enumerate(range(0, len(samples), 2))
        ]
        counts = execution.run_tasks(dies_after_its_first_shard,
                                     [(t, False, marker) for t in tasks], execution=RAY2, desc="t")
    store.compact()
    assert marker.with_suffix(".killed").exists(), "the first attempt was not killed"
    # the retry kept the batch its killed attempt wrote: shard 0 computes one map more
    assert counts == [len(t.samples) - (t.shard == 0) for t in tasks]
    assert filecmp.cmp(store.path, reference.path, shallow=False)
    # all cached: nothing to do, no task started
    assert extract.extract_models(samples, [(choice, store)], device="cpu", execution=RAY2,
                                  progress=False) == {store.path: 0}


@pytest.mark.slow
def test_process_and_ray_builds_give_byte_identical_scores_and_maps(ray, tmp_path, demo_params):
    params = demo_params(["dinov2", "resnet50"], probes={"resnet50": ["linear_probe"]})
    params.update(
        profile="scaleout",
        dataset={"kind": "synthetic", "root": str(tmp_path / "data"), "n_annotated": 6,
                 "n_pool": 40},
        stats={"n_boot": 100}, report={"gallery_size": 1, "examples": 2},
    )
    params["metrics"].update(percentiles=[50, 90], baselines=["centre_gaussian"])
    outputs = {}
    for engine, section in [("local", {"engine": "local"}),
                            ("processes", {"engine": "processes", "workers": 2}),
                            ("ray", {"engine": "ray", "workers": 2})]:
        run = {**params, "execution": section,
               "extraction": {"batch_size": 2, "device": "cpu",
                              "cache_dir": str(tmp_path / engine / "cache")}}
        path = tmp_path / f"{engine}.yaml"
        path.write_text(yaml.safe_dump(run))
        result = pipeline.build(path, root=ROOT, report_root=tmp_path / engine / "report",
                                only=["q1_alignment"])
        assert result.executed == ["q1_alignment"]
        maps = sorted((tmp_path / engine / "cache").rglob("*.h5"))
        outputs[engine] = (result.profile_dir / "tables" / "scores.parquet", maps)
    local_scores, local_maps = outputs.pop("local")
    assert len(local_maps) == 3  # two models (the linear probe shares ResNet-50's frozen store), baselines
    for engine, (scores, maps) in outputs.items():
        assert [p.name for p in maps] == [p.name for p in local_maps], engine
        for a, b in zip(local_maps, maps, strict=True):
            assert filecmp.cmp(a, b, shallow=False), (engine, a.name)
        assert filecmp.cmp(local_scores, scores, shallow=False), engine
    leftovers = [p for p in (tmp_path / "ray" / "cache").rglob("*") if p.is_file()]
    assert sorted(leftovers) == outputs["ray"][1]  # no shards or probe files left behind


def test_an_unreachable_address_is_a_clear_error_and_exit_2(ray, tmp_path):
    with pytest.raises(execution.ExecutionError, match=r"'ray://127.0.0.1:1'.*ray start --head"):
        execution.check_address("ray://127.0.0.1:1")
    params = yaml.safe_load((ROOT / "params" / "demo.yaml").read_text())
    params["execution"] = {"engine": "ray", "address": "127.0.0.1:1"}
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(params))
    done = subprocess.run([sys.executable, str(ROOT / "build.py"), "--params", str(path),
                           "--report-dir", str(tmp_path / "report")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "execution.address '127.0.0.1:1': no Ray cluster reachable" in done.stderr
    assert "Traceback" not in done.stderr
