"""Extraction's progress per image (XRAI ticks each image, not each batch) and its one line of
cost, printed once the first image is timed and kept out of an executed notebook."""

import itertools
from types import SimpleNamespace

import nbformat
import pytest

from sightline import data, extract, pipeline, saliency, synthetic
from sightline.config import SIModelChoice

CNN = SIModelChoice(key="resnet101", weights="random", size="tiny")
CHEAP_XRAI = saliency.XraiSettings(steps=2, batch_size=4, algorithm="fast")


def test_the_estimate_line_from_one_timed_image():
    assert extract.estimate_line("maps lite0", 74.3, 6, "cpu", "fewer steps lower it") == (
        "[estimate] maps lite0: ~74 s per image × 6 images ≈ 7.4 min on cpu; fewer steps lower it")
    assert extract.estimate_line("maps vit", 0.53, 9000, "cuda") == (
        "[estimate] maps vit: ~0.53 s per image × 9000 images ≈ 1.3 h on cuda")
    assert extract.estimate_line("maps vit", 9.9, 6, "cpu") is None  # under a minute: no line


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = synthetic.make_synthetic(tmp_path_factory.mktemp("ds"), n_annotated=4, n_pool=0,
                                    image_size=(64, 64))
    return data.load_wikichurches(root).samples[:3]


def test_xrai_moves_the_bar_per_image_and_the_cost_is_said_once(samples, tmp_path, monkeypatch,
                                                                 capsys):
    ticks = []
    real_tick = extract.ImageProgress.tick
    monkeypatch.setattr(extract.ImageProgress, "tick",
                        lambda self, images=1: (ticks.append(images), real_tick(self, images)))
    clock = itertools.count(0.0, 100.0)  # every reading of the clock is 100 s later
    monkeypatch.setattr(extract, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    store = extract.store_for(tmp_path, "ds", "resnet101-tiny", "frozen")
    task = extract.ShardTask(CNN, tuple(samples), store.path, 0, 8, "cpu", 0,
                             extract.code_version(), methods=("gradcam", "xrai"), xrai=CHEAP_XRAI)
    assert extract.extract_shard(task, progress=True) == 3
    assert ticks == [1, 1, 1, 0]  # one batch of 3: XRAI ticks each image, nothing left after
    estimates = [line for line in capsys.readouterr().err.splitlines()
                 if line.startswith(extract.ESTIMATE_PREFIX)]
    assert estimates == [
        "[estimate] maps resnet101-tiny-random: ~100 s per image × 3 images ≈ 5.0 min on cpu; "
        "XRAI (2 steps, fast) is most of it; its xrai.steps or algorithm: fast lowers it"]


def test_batched_methods_move_the_bar_per_batch_and_quick_stages_say_no_cost(samples, tmp_path,
                                                                            capsys):
    store = extract.store_for(tmp_path, "ds", "resnet101-tiny", "gradcam")
    task = extract.ShardTask(CNN, tuple(samples), store.path, 0, 2, "cpu", 0,
                             extract.code_version(), methods=("gradcam",))
    assert extract.extract_shard(task, progress=True) == 3
    err = capsys.readouterr().err
    assert "3/3" in err and extract.ESTIMATE_PREFIX not in err


def test_an_executed_notebook_keeps_no_estimate_line():
    line = extract.estimate_line("maps x", 100.0, 3, "cpu")
    cell = nbformat.v4.new_code_cell("extract.extract_models(...)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text=f"{line}\nUserWarning: x\n")]
    saved = pipeline.reproducible(nbformat.v4.new_notebook(cells=[cell]), "q1")
    assert saved.cells[0].outputs[0].text == "UserWarning: x\n"


def test_baselines_count_images_not_batches(samples, tmp_path, capsys):
    store = extract.store_for(tmp_path, "ds", "baseline", "baseline")
    assert extract.extract_baselines(samples, ["centre_gaussian"], store, batch_size=2) == 3
    err = capsys.readouterr().err
    assert "maps baselines: 100%" in err and "3/3 [" in err and "img/s" in err
