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
            for name, rel in (("auc", 0), ("nss", 1e-5)):  # one row each, union and boxes
                value = rows.loc[rows["metric"] == name, "value"].item()
                want = getattr(metrics, name)(up, targets.masks[t][None])[0]
                assert value == pytest.approx(want, rel=rel, abs=rel, nan_ok=True)
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


def test_common_frame_planted_map_scores_as_worked_out_in_both_frames(tmp_path):
    """A 16 x 8 image, centre-cropped to its middle half (x in [0.25, 0.75]). Box A (left
    quarter) is cropped away; box B (x in [0.5, 0.75]) is the right half of the crop. The
    map is 1 on the crop's right half: in the model frame it is exactly the union (IoU 1);
    in the common frame (16 x 16) it covers box B only, 64 of the union's 128 pixels."""
    boxes = (data.Region(0.0, 0.0, 0.25, 1.0, 1, 1, 1, "A"), data.Region(0.5, 0.0, 0.25, 1.0, 2, 2, 2, "B"))
    sample = data.Sample("im", tmp_path / "im.jpg", boxes, 16, 8)
    crop = Geometry(size=8, resize=8)
    assert crop.frame_in_image(16, 8) == (0.25, 0.0, 0.75, 1.0)
    grid = np.zeros((1, 1, 8, 8), np.float32)
    grid[..., 4:] = 1
    store = cache.MapStore(tmp_path / "m.h5")
    with store.writer() as writer:
        writer.put(["im"], {("cls", 0): grid})

    def value(table, target, metric, threshold=None):
        rows = table[(table["target"] == target) & (table["metric"] == metric)]
        if threshold is not None:
            rows = rows[rows["threshold"] == threshold]
        return rows["value"].item()

    own = scoring.score_store(store, scoring.build_targets([sample], crop, 8), model="m",
                              variant="frozen", percentiles=[50, 75], resolution=8,
                              progress=False)
    assert value(own, "union", "iou", 50) == 1.0
    assert np.isnan(value(own, "box0", "iou", 50))  # box A is not in the model's frame
    common_targets = scoring.build_targets([sample], scoring.COMMON_FRAME, 16)
    assert common_targets.masks[0].sum() == 128
    common = scoring.score_store_common(store, common_targets, crop, model="m",
                                        variant="frozen", percentiles=[50, 75], resolution=16,
                                        progress=False)
    assert list(common.columns) == scoring.COLUMNS and set(common["head"]) == {-1}
    assert value(common, "union", "iou", 75) == 0.5  # 64 / (64 + 128 - 64)
    assert value(common, "union", "gtc", 75) == 0.5 and value(common, "union", "sc", 75) == 1.0
    assert value(common, "box0", "iou", 75) == 0.0 and value(common, "box1", "iou", 75) == 1.0
    assert value(own, "union", "coverage") == value(common, "union", "coverage") == 1.0


def test_to_image_places_the_frame_pixel_exactly_and_zeroes_the_unseen_part():
    rng = np.random.default_rng(3)
    grid = rng.random((2, 3, 16, 8), dtype=np.float32)  # a 16 x 8 grid on an 8 x 8 frame
    placed = Geometry(size=8, resize=8).to_image(grid, 16, 8, 16)
    assert placed.shape == (2, 3, 16, 16)
    np.testing.assert_array_equal(placed[..., 4:12], grid)  # scale 1: no interpolation
    assert not placed[..., :4].any() and not placed[..., 12:].any()
    squash = Geometry(size=224).to_image(grid[0], 30, 20, 40)
    np.testing.assert_allclose(squash, metrics.upsample(grid[0], 40), atol=1e-6)
