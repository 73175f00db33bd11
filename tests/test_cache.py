"""The map cache: round trips, atomic shards, and resuming a killed extraction."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from sightline import cache, data, extract, synthetic
from sightline.config import ModelChoice

ROOT = Path(__file__).resolve().parents[1]


def _maps(ids, seed):
    rng = np.random.default_rng(seed)
    return {("cls", 0): rng.random((len(ids), 3, 4, 4), dtype=np.float32),
            ("rollout", 1): rng.random((len(ids), 1, 4, 4), dtype=np.float32)}


def test_round_trip_orders_by_id_and_compacts(tmp_path):
    store = cache.MapStore(tmp_path / "m.h5")
    first, second = _maps(["b", "a"], 0), _maps(["c"], 1)
    with store.writer() as w:
        w.put(["b", "a"], first)
        w.put(["c"], second)
    assert not store.shard_dir.exists()  # compacted, and the emptied shard folder removed
    assert store.image_ids() == {"a", "b", "c"}
    assert store.keys() == [("cls", 0), ("rollout", 1)]
    ids, maps = store.read("cls", 0)
    assert ids == ["a", "b", "c"]
    np.testing.assert_array_equal(maps[0], first[("cls", 0)][1])
    np.testing.assert_array_equal(maps[2], second[("cls", 0)][0])
    _, subset = store.read("rollout", 1, ["c", "b"])
    np.testing.assert_array_equal(subset[1], first[("rollout", 1)][0])


def test_predicted_classes_survive_compaction_and_a_later_shard_adds_missing_ones(tmp_path):
    store = cache.MapStore(tmp_path / "m.h5")
    with store.writer() as w:
        w.put(["b", "a"], _maps(["b", "a"], 0), predicted=[3, 0])
        w.put(["c"], _maps(["c"], 1))  # no classifier behind this batch
    assert store.predicted() == {"a": 0, "b": 3}
    with h5py.File(store.path) as h5:  # aligned with the sorted ids, -1 where none
        assert h5["predicted"][()].tolist() == [0, 3, -1]
    with store.writer() as w:
        w.put(["c"], {}, predicted=[2])  # a prediction only, for stored maps
    assert store.predicted() == {"a": 0, "b": 3, "c": 2} and store.image_ids() == {"a", "b", "c"}
    assert store.keys() == [("cls", 0), ("rollout", 1)]
    with pytest.raises(ValueError, match="2 predicted classes for 1 image ids"):
        cache.ShardWriter(store.shard_dir).put(["d"], {}, predicted=[1, 2])


def test_reader_sees_shards_of_an_unfinished_run_and_ignores_partial_files(tmp_path):
    store = cache.MapStore(tmp_path / "m.h5")
    store.shard_dir.mkdir()
    writer = cache.ShardWriter(store.shard_dir)
    writer.put(["x"], _maps(["x"], 2))
    (store.shard_dir / "000001.h5.tmp").write_bytes(b"half a file")  # a write cut short
    assert store.image_ids() == {"x"}
    assert store.read("cls", 0)[1].shape == (1, 3, 4, 4)


def test_missing_maps_name_the_store_and_what_to_do(tmp_path):
    store = cache.MapStore(tmp_path / "m.h5")
    with store.writer() as w:
        w.put(["a"], _maps(["a"], 0))
    with pytest.raises(KeyError, match="run the extraction"):
        store.read("cls", 0, ["a", "zzz"])


def test_batch_size_mismatch_is_an_error(tmp_path):
    writer = cache.ShardWriter(tmp_path)
    with pytest.raises(ValueError, match="2 image ids"):
        writer.put(["a", "b"], _maps(["a"], 0))


KILLABLE = """
import sys
from sightline import data, extract
from sightline.config import ModelChoice
wc = data.load_wikichurches(sys.argv[1])
store = extract.store_for(sys.argv[2], "ds", "dinov2-tiny", "frozen")
extract.extract_model(wc.samples, ModelChoice(key="dinov2", weights="random", size="tiny"),
                      store, batch_size=1, device="cpu", progress=False)
"""


@pytest.mark.slow
def test_killed_extraction_resumes_to_the_uninterrupted_result(tmp_path):
    root = synthetic.make_synthetic(tmp_path / "ds", n_annotated=8, n_pool=0, seed=3)
    wc = data.load_wikichurches(root)
    choice = ModelChoice(key="dinov2", weights="random", size="tiny")

    reference = extract.store_for(tmp_path / "ref", "ds", "dinov2-tiny", "frozen")
    extract.extract_model(wc.samples, choice, reference, batch_size=1, device="cpu", progress=False)

    killed = extract.store_for(tmp_path / "run", "ds", "dinov2-tiny", "frozen")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib")}
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, str(root), str(tmp_path / "run")],
                            env=env)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if killed.shard_dir.is_dir() and len(list(killed.shard_dir.glob("*.h5"))) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "extraction finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = killed.image_ids()
    assert 2 <= len(partial) < len(wc.samples)

    resumed = extract.extract_model(wc.samples, choice, killed, batch_size=1, device="cpu",
                                    progress=False)
    assert resumed == len(wc.samples) - len(partial)
    assert killed.keys() == reference.keys()
    for method, layer in reference.keys():
        ids, expected = reference.read(method, layer)
        ids_resumed, got = killed.read(method, layer)
        assert ids == ids_resumed
        np.testing.assert_array_equal(got, expected)
    with h5py.File(killed.path) as h5:  # one consolidated, readable file
        assert len(h5["image_ids"]) == len(wc.samples)
    assert not killed.shard_dir.exists()  # no empty shard folder left behind
    assert extract.extract_model(wc.samples, choice, killed, device="cpu", progress=False) == 0
