"""Right vs wrong predictions: the ``correct`` column from planted classifiers whose argmax
is known, the < 10 rule of the split tests, and the Q2 split on a planted shift."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from sightline import data, extract, scoring, shift, stats, variants
from sightline import photos as ph


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


def test_style_correct_from_a_planted_head_is_cached_beside_the_store(tmp_path, monkeypatch):
    styles = extract.STYLES
    samples = _samples(tmp_path, [0, 1, 2, 3, 0],
                       [styles[0], styles[2], styles[2], "Other", styles[3]])
    loads = []
    monkeypatch.setattr(variants, "load_run", lambda run, device: loads.append(run)
                        or _PlantedHead())
    store = extract.store_for(tmp_path / "cache", "d" * 16, "m", "frozen", key="k")
    job = extract.MapJob(None, store, None, tmp_path / "run")
    expected = {"img0": True, "img1": False, "img2": True, "img3": None, "img4": False}
    assert extract.style_correct(job, samples, batch_size=2) == expected
    cached = store.path.with_name(store.path.stem + ".predictions.csv")
    assert pd.read_csv(cached)["predicted"].tolist() == [styles[i] for i in (0, 1, 2, 3, 0)]
    assert extract.style_correct(job, samples) == expected and len(loads) == 1  # no reload
    assert extract.style_correct(extract.MapJob(None, store), samples) is None  # no head


def test_photo_prediction_is_right_when_a_box_class_is_in_the_top_five():
    region = ph.Region("cat", "animal", (281, 285), (0, 0, 1, 1), np.ones((2, 2), bool))
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
    table = shift.deltas_by_correct(_shift_scores(12, 10, 3), headline_percentile=90,
                                    metrics=("iou",))
    row = table.iloc[0]
    assert len(table) == 1 and (row.model, row.strategy, row.method, row.layer) == (
        "m", "full", "cls", 3)
    assert (row.n_right, row.n_wrong, row.n_mixed) == (12, 10, 3)
    assert row.delta_right == pytest.approx(0.2) and row.delta_wrong == pytest.approx(0.05)
    assert row.p_mwu < 1e-3 and row.note == ""
    small = shift.deltas_by_correct(_shift_scores(12, 9, 0), headline_percentile=90,
                                    metrics=("iou",)).iloc[0]
    assert small.n_wrong == 9 and small.delta_wrong == pytest.approx(0.05)
    assert math.isnan(small.p_mwu) and small.note.startswith("not tested")
