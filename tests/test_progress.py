"""Progress per image (XRAI ticks each image, not each batch) or training step, and each
stage's one line of cost, printed once its first image / step / sanity step is timed and kept
out of an executed notebook."""

import itertools
from types import SimpleNamespace

import nbformat
import pytest

from sightline import config, data, extract, finetune, models, pipeline, saliency, sanity, synthetic
from sightline.config import Finetune, ModelChoice, SIModelChoice

CNN = SIModelChoice(key="resnet101", weights="random", size="tiny")
CHEAP_XRAI = saliency.XraiSettings(steps=2, batch_size=4, algorithm="fast")


def test_the_estimate_line_from_one_timed_image():
    assert extract.estimate_line("maps lite0", 74.3, 6, "cpu", "fewer steps lower it") == (
        "[estimate] maps lite0: ~74 s per image × 6 images ≈ 7.4 min on cpu; fewer steps lower it")
    assert extract.estimate_line("maps vit", 0.53, 9000, "cuda") == (
        "[estimate] maps vit: ~0.53 s per image × 9000 images ≈ 1.3 h on cuda")
    assert extract.estimate_line("maps vit", 9.9, 6, "cpu") is None  # under a minute: no line
    assert extract.estimate_line("sanity lite0", 48.0, 13, "cpu", unit="step") == (
        "[estimate] sanity lite0: ~48 s per step × 13 steps ≈ 10.4 min on cpu")


@pytest.fixture
def planted_clock(monkeypatch):
    """Every reading of the progress clock is 100 s after the one before."""
    clock = itertools.count(0.0, 100.0)
    monkeypatch.setattr(extract, "time", SimpleNamespace(perf_counter=lambda: next(clock)))


def _estimates(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines()
            if line.startswith(extract.ESTIMATE_PREFIX)]


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = synthetic.make_synthetic(tmp_path_factory.mktemp("ds"), n_annotated=4, n_pool=0,
                                    image_size=(64, 64))
    return data.load_wikichurches(root).samples[:3]


def test_xrai_moves_the_bar_per_image_and_the_cost_is_said_once(samples, tmp_path, monkeypatch,
                                                                 capsys, planted_clock):
    ticks = []
    real_tick = extract.ImageProgress.tick
    monkeypatch.setattr(extract.ImageProgress, "tick",
                        lambda self, images=1: (ticks.append(images), real_tick(self, images)))
    store = extract.store_for(tmp_path, "ds", "resnet101-tiny", "frozen")
    job = extract.MapJob(CNN, store, ("gradcam", "xrai"), xrai=CHEAP_XRAI)
    task = extract.ShardTask(job, tuple(samples), 0, 8, "cpu", 0, extract.code_version())
    assert extract.extract_shard(task, progress=True) == 3
    assert ticks == [1, 1, 1, 0]  # one batch of 3: XRAI ticks each image, nothing left after
    assert _estimates(capsys) == [
        "[estimate] maps resnet101-tiny-random: ~100 s per image × 3 images ≈ 5.0 min on cpu; "
        "XRAI (2 steps, fast) is most of it; fewer steps lower it (extraction.xrai; Shared "
        "Interest: shared_interest.xrai)"]


def test_batched_methods_move_the_bar_per_batch_and_quick_stages_say_no_cost(samples, tmp_path,
                                                                            capsys):
    store = extract.store_for(tmp_path, "ds", "resnet101-tiny", "gradcam")
    task = extract.ShardTask(extract.MapJob(CNN, store, ("gradcam",)), tuple(samples), 0, 2, "cpu", 0,
                             extract.code_version())
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


def test_the_randomisation_test_estimates_from_its_first_step_and_skips_cached_steps(
        samples, tmp_path, capsys, planted_clock):
    model = models.load_choice(CNN)
    kwargs = {"cache_dir": tmp_path, "dataset_id": "ds", "name": "cnn", "variant": "frozen",
              "methods": ["gradcam"], "depths": [1], "modes": ["cascade"]}
    n_steps = len(sanity.steps(sanity.units(model), [1], ["cascade"]))
    sanity.randomisation_test(model, samples, **kwargs)
    # the first step (3 images) took one 100-s reading: 100 s per step
    assert _estimates(capsys) == [
        f"[estimate] sanity cnn: ~100 s per step × {n_steps} steps ≈ {n_steps * 100 / 60:.1f} "
        "min on cpu; sanity.depths, modes or max_images lower it"]
    sanity.randomisation_test(model, samples, **kwargs)
    assert _estimates(capsys) == []  # every step cached: nothing to do, nothing to estimate


def test_training_estimates_every_step_left_from_its_first(tmp_path, capsys, planted_clock):
    root = synthetic.make_synthetic(tmp_path / "ds", n_annotated=4, n_pool=24, seed=1,
                                    image_size=(64, 64))
    recipe = Finetune(epochs=2, batch_size=8, val_fraction=0.25, device="cpu")
    split = finetune.make_split(data.load_wikichurches(root), "ds", 0, recipe.val_fraction)
    finetune.train_run(ModelChoice(key="dinov2", weights="random", size="tiny"),
                       "linear_probe", 0, split, recipe, tmp_path / "runs", progress=True)
    steps = -(-len(split.train) // recipe.batch_size) * recipe.epochs
    assert _estimates(capsys) == [
        f"[estimate] train dinov2-tiny-random linear_probe.s0: ~100 s per step × {steps} steps "
        f"≈ {steps * 100 / 60:.1f} min on cpu; fewer finetune.epochs or strategies lower it"]


def test_q1s_xrai_settings_are_the_profiles_and_key_the_stores_that_read_xrai(tmp_path):
    tiny = {"size": "tiny", "weights": "random"}
    params = config.Params(profile="p", dataset={"kind": "coco", "root": "x"},
                           models=[{"key": "cnn", "source": "timm", "name": "resnet18",
                                    "weights": "random"}, {"key": "dinov2", **tiny}],
                           extraction={"xrai": {"steps": 8, "algorithm": "fast"}})
    cheap = saliency.XraiSettings(**params.extraction.xrai.model_dump())
    assert cheap == saliency.XraiSettings(steps=8, batch_size=20, algorithm="fast")
    jobs = finetune.map_jobs(params.models, [], cache_dir=tmp_path, dataset_id="ds", seed=0,
                             xrai=cheap)
    cnn, vit = jobs[("cnn-random", "frozen")], jobs[("dinov2-tiny-random", "frozen")]
    assert cnn.xrai == cheap and cnn.store.path.name.startswith("cnn-random__frozen.xrai8fast__")
    assert vit.xrai is None and vit.store.path.name.startswith("dinov2-tiny-random__frozen__")
