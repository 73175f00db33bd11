"""Cached maps -> the tidy metrics table: right numbers under the right labels."""

import numpy as np
import pandas as pd
import pytest

from sightline import cache, data, metrics, scoring, synthetic
from sightline.geometry import Geometry

R = 32
GEOMETRY = Geometry(size=224, resize=256)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = synthetic.make_synthetic(tmp_path_factory.mktemp("ds"), n_annotated=5, n_pool=0, seed=2)
    return data.load_wikichurches(root).samples


def test_targets_are_each_union_then_its_boxes(samples):
    targets = scoring.build_targets(samples, GEOMETRY, R)
    start = 0
    for i, sample in enumerate(samples):
        boxes = data.box_masks(sample, GEOMETRY, R)
        rows = slice(start, start + 1 + len(boxes))
        assert list(targets.target[rows]) == ["union"] + [f"box{j}" for j in range(len(boxes))]
        assert list(targets.feature[rows]) == ["union"] + [b.feature for b in sample.boxes]
        assert (targets.image_index[rows] == i).all()
        np.testing.assert_array_equal(targets.masks[start], boxes.any(axis=0))
        np.testing.assert_array_equal(targets.masks[start + 1 : rows.stop], boxes)
        start = rows.stop
    assert start == len(targets.masks)
    assert targets.soft.shape == (len(samples), R, R) and targets.soft.max() == pytest.approx(1)


def test_scores_match_the_one_to_one_metrics_under_their_labels(samples):
    targets = scoring.build_targets(samples, GEOMETRY, R)
    rng = np.random.default_rng(0)
    maps = {0: rng.random((len(samples), 3, 4, 4), dtype=np.float32),  # 2 heads + mean
            5: rng.random((len(samples), 3, 4, 4), dtype=np.float32)}
    percentiles = [50, 90]
    table = scoring.score_maps(maps, targets, percentiles, R)
    for t in [0, 1, len(targets.masks) - 1]:
        image = targets.image_ids[targets.image_index[t]]
        for layer, column, head in [(0, 0, 0), (5, 1, 1), (5, 2, -1)]:
            up = metrics.upsample(maps[layer][targets.image_index[t], column], R)[None]
            rows = table[(table["image_id"] == image) & (table["target"] == targets.target[t])
                         & (table["layer"] == layer) & (table["head"] == head)]
            expected_iou = metrics.iou(up, targets.masks[t][None], percentiles)[0]
            got = rows[rows["metric"] == "iou"].sort_values("threshold")["value"].to_numpy()
            np.testing.assert_allclose(got, expected_iou)
            cov = rows.loc[rows["metric"] == "coverage", "value"].item()
            assert cov == pytest.approx(metrics.coverage(up, targets.masks[t][None])[0], rel=1e-5)
            rel = rows[rows["metric"] == "iou_rel"].sort_values("threshold")["value"].to_numpy()
            np.testing.assert_allclose(
                rel, expected_iou / metrics.max_iou(targets.masks[t][None], percentiles)[0])
    continuous = table[table["metric"].isin(["mse", "kl", "emd"])]
    assert set(continuous["target"]) == {"union"} and set(continuous["head"]) == {-1}
    first = continuous[(continuous["image_id"] == targets.image_ids[0]) & (continuous["layer"] == 5)]
    up = metrics.upsample(maps[5][0, 2], R)[None]
    assert first.loc[first["metric"] == "emd", "value"].item() == pytest.approx(
        metrics.emd(up, targets.soft[:1])[0])


def test_store_scoring_groups_layers_by_grid_and_labels_head_less_maps(samples, tmp_path):
    targets = scoring.build_targets(samples, GEOMETRY, R)
    ids = targets.image_ids
    rng = np.random.default_rng(1)
    store = cache.MapStore(tmp_path / "m.h5")
    with store.writer() as writer:
        writer.put(ids, {("cls", 0): rng.random((len(ids), 3, 4, 4), dtype=np.float32),
                         ("rollout", 0): rng.random((len(ids), 1, 4, 4), dtype=np.float32),
                         ("gradcam", 0): rng.random((len(ids), 1, 8, 8), dtype=np.float32),
                         ("gradcam", 1): rng.random((len(ids), 1, 4, 4), dtype=np.float32)})
    table = scoring.score_store(store, targets, model="m", variant="frozen", percentiles=[90],
                                resolution=R, progress=False)
    assert list(table.columns) == scoring.COLUMNS
    kinds = table.groupby(["method", "layer"], observed=True)["head"].unique()
    assert sorted(kinds[("cls", 0)]) == [-1, 0, 1]
    assert list(kinds[("rollout", 0)]) == [-1] and list(kinds[("gradcam", 1)]) == [-1]
    n_targets = len(targets.masks)
    per_kind = table[table["metric"] == "iou"].groupby(["method", "layer"], observed=True).size()
    assert per_kind[("cls", 0)] == 3 * n_targets and per_kind[("gradcam", 0)] == n_targets
    assert not table.duplicated(["image_id", "method", "layer", "head", "target", "metric",
                                 "threshold"]).any()
    assert isinstance(table["metric"].dtype, pd.CategoricalDtype)
