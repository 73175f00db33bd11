"""Right vs wrong predictions: the ``correct`` column from planted classifiers whose argmax
is known, the < 10 rule of the split tests, and the Q2 split on a planted shift."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from sightline import data, extract, paired_deltas, scoring, stats
from sightline.config import ModelChoice
from sightline.finetune import checkpoints
from sightline.studies import photos as ph


def test_split_comparison_against_the_normal_approximation_by_hand():
    right, wrong = np.arange(10, 20, dtype=float), np.arange(10, dtype=float)
    result = stats.split_comparison(right, [*wrong, np.nan])  # a NaN is dropped, not counted
    assert (result["n_right"], result["n_wrong"]) == (10, 10)
    assert result["mean_right"] == 14.5 and result["mean_wrong"] == 4.5 and result["diff"] == 10
    # U = 100 (complete separation), mean 50, sd sqrt(10 * 10 * 21 / 12), continuity 0.5
    z = (100 - 50 - 0.5) / math.sqrt(10 * 10 * 21 / 12)
    assert result["p_mwu"] == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-9)
    assert result["note"] == ""


def test_a_side_under_ten_images_is_reported_not_tested():
    result = stats.split_comparison(np.ones(9), np.zeros(30))
    assert (result["n_right"], result["n_wrong"], result["mean_right"]) == (9, 30, 1.0)
    assert math.isnan(result["p_mwu"]) and "fewer than 10 images" in result["note"]
    assert math.isnan(stats.split_comparison([], np.zeros(12))["mean_right"])


def test_mark_correct_and_the_tidy_column():
    rows = pd.DataFrame({c: [0, 0, 0] for c in scoring.COLUMNS if c != "correct"})
    rows["image_id"] = ["a", "b", "c"]
    marked = scoring.tidy(scoring.mark_correct(rows, {"a": True, "b": False}))
    assert list(marked.columns) == scoring.COLUMNS and marked["correct"].dtype == "boolean"
    assert marked["correct"].tolist() == [True, False, pd.NA]
    assert scoring.tidy(rows)["correct"].isna().all()  # no classifier: NA everywhere


class _PlantedHead:
    """A stand-in for a trained run: image i of the batch is predicted ``classes[i]``
    (read from the image's red channel), so the argmax is known."""

    device = "cpu"

    def preprocess(self, images):
        return torch.tensor([np.asarray(image)[0, 0, 0] for image in images])

    def score(self, pixels):
        return torch.nn.functional.one_hot(pixels.long(), len(extract.STYLES)).float()


def _samples(tmp_path, predicted, labels):
    samples = []
    for i, (p, label) in enumerate(zip(predicted, labels, strict=True)):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (4, 4), (p, 0, 0)).save(path)
        samples.append(data.Sample(f"img{i}", path, (), 4, 4, label))
    return samples


def _mapped_store(tmp_path, samples):
    """A store holding maps of the samples but no predictions, as extracted before the
    extraction recorded them."""
    store = extract.store_for(tmp_path / "cache", "d" * 16, "m", "frozen", key="k")
    with store.writer() as writer:
        writer.put([s.image_id for s in samples], {("cls", 0): np.ones((len(samples), 1, 2, 2))})
    return store


def test_a_store_without_predictions_gets_them_from_the_head_once(tmp_path, monkeypatch):
    styles = extract.STYLES
    samples = _samples(tmp_path, [0, 1, 2, 3, 0],
                       [styles[0], styles[2], styles[2], "Other", styles[3]])
    loads = []
    monkeypatch.setattr(checkpoints, "load_run", lambda run, device: loads.append(run)
                        or _PlantedHead())
    store = _mapped_store(tmp_path, samples)
    job = extract.MapJob(None, store, None, tmp_path / "run")
    expected = {"img0": True, "img1": False, "img2": True, "img3": None, "img4": False}
    assert extract.style_correct(job, samples, batch_size=2) == expected
    assert store.predicted() == {f"img{i}": c for i, c in enumerate((0, 1, 2, 3, 0))}
    assert not store.shard_dir.exists() and store.image_ids() == {s.image_id for s in samples}
    assert store.read("cls", 0)[1].shape == (5, 1, 2, 2)  # the maps are kept
    assert extract.style_correct(job, samples) == expected and len(loads) == 1  # no reload
    assert extract.style_correct(extract.MapJob(None, store), samples) is None  # no head
    with pytest.raises(KeyError, match="no maps for 1 image"):
        extract.style_correct(job, [*samples, data.Sample("new", samples[0].path, (), 4, 4,
                                                          styles[0])])


def _noise_samples(folder, n, labels):
    folder.mkdir()
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        path = folder / f"n{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
        samples.append(data.Sample(f"n{i}", path, (), 48, 40, labels[i % len(labels)]))
    return samples


@pytest.mark.parametrize("key, methods", [
    ("dinov2", ("cls", "rollout")),  # attention only: the pooled embedding of that pass
    ("dinov2", ("chefer", "gradcam")),
    ("dinov2", ("attnlrp", "legrad")),
    ("siglip", ("probe", "chefer")),
    ("resnet50", ("gradcam",)),
])
def test_the_extraction_records_the_heads_prediction_of_its_own_forward_pass(
        tmp_path, monkeypatch, key, methods):
    """A planted style head on a tiny backbone: the classes the extraction stores equal the
    head's argmax in a separate forward pass, and ``correct`` then loads no model."""
    choice = ModelChoice(key=key, size="tiny", weights="random")
    backbone = checkpoints.backbone(choice, 0, "cpu")
    samples = _noise_samples(tmp_path / "images", 8, list(extract.STYLES))
    pixels = backbone.preprocess([data.load_image(s.path) for s in samples])
    with torch.no_grad():  # class c's weight: image c's centred embedding, so classes differ
        embedded = checkpoints.embed(backbone, pixels)
        centre = embedded.mean(dim=0)
        head = torch.nn.Linear(embedded.shape[-1], len(extract.STYLES))
        head.weight.copy_(embedded[: len(extract.STYLES)] - centre)
        head.bias.copy_(-head.weight @ centre)
    loaded = dataclasses.replace(backbone, head=head.eval())
    with torch.no_grad():
        separate = loaded.score(pixels).argmax(dim=-1).tolist()
    assert len(set(separate)) > 1  # the planted head tells images apart
    store = extract.store_for(tmp_path / "cache", "d" * 16, extract.model_name(choice), "frozen")
    extract.extract_model(samples, choice, store, batch_size=3, loaded=loaded, methods=methods,
                          progress=False)
    assert store.predicted() == {s.image_id: c for s, c in zip(samples, separate, strict=True)}

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded for predictions the store holds")

    monkeypatch.setattr(checkpoints, "load_run", no_model)
    correct = extract.style_correct(extract.MapJob(choice, store, methods, tmp_path / "run"),
                                    samples)
    assert correct == {s.image_id: extract.STYLES[c] == s.label
                       for s, c in zip(samples, separate, strict=True)}


def test_photo_prediction_is_right_when_a_box_class_is_in_the_top_five():
    region = ph.Region("cat", (281, 285), (0, 0, 1, 1), np.ones((2, 2), bool))
    photo = ph.Photo("p.jpg", Path("p.jpg"), 2, 2, (region,))
    probs = np.zeros(1000)
    probs[[1, 2, 3, 4, 285]] = [0.5, 0.4, 0.3, 0.2, 0.1]
    assert ph.in_top5(photo, "cat", probs)
    probs[285], probs[6] = 0.0, 0.1
    assert not ph.in_top5(photo, "cat", probs)


def _shift_scores(n_right, n_wrong, n_mixed):
    """Frozen IoU 0.1 everywhere; two seeds of a full fine-tune raise it by 0.2 on the images
    both seeds classify right, by 0.05 on those both get wrong; the seeds disagree on the rest."""
    n = n_right + n_wrong + n_mixed
    rows = []
    for i in range(n):
        side = "right" if i < n_right else "wrong" if i < n_right + n_wrong else "mixed"
        for variant, seed_correct in (("frozen", None), ("full.s0", side != "wrong"),
                                      ("full.s1", side == "right")):
            value = 0.1 + (0 if variant == "frozen" else 0.2 if side == "right" else 0.05)
            rows.append({"image_id": f"i{i:02d}", "model": "m", "variant": variant,
                         "method": "cls", "layer": 3, "head": -1, "target": "union",
                         "feature": "union", "metric": "iou", "threshold": 90.0,
                         "value": value, "correct": seed_correct})
    return scoring.tidy(pd.DataFrame(rows))


def test_q2_split_by_the_fine_tuned_prediction():
    table = paired_deltas.deltas_by_correct(_shift_scores(12, 10, 3), headline_percentile=90,
                                    metrics=("iou",))
    row = table.iloc[0]
    assert len(table) == 1 and (row.model, row.strategy, row.method, row.layer) == (
        "m", "full", "cls", 3)
    assert (row.n_right, row.n_wrong, row.n_mixed) == (12, 10, 3)
    assert row.delta_right == pytest.approx(0.2) and row.delta_wrong == pytest.approx(0.05)
    assert row.p_mwu < 1e-3 and row.note == ""
    small = paired_deltas.deltas_by_correct(_shift_scores(12, 9, 0), headline_percentile=90,
                                    metrics=("iou",)).iloc[0]
    assert small.n_wrong == 9 and small.delta_wrong == pytest.approx(0.05)
    assert math.isnan(small.p_mwu) and small.note.startswith("not tested")
