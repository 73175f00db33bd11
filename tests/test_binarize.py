"""Binarisation rules against hand computations, skimage and the conventions' own code."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from skimage import filters, measure

from sightline import binarize, config, metrics


def test_the_config_lists_exactly_the_registered_rules():
    assert config.RULES == tuple(binarize.RULES)
    assert config.Metrics().rules == ("percentile",)
    assert config.Metrics(rules=["std", "percentile", "mass", "std"]).rules == (
        "percentile", "mass", "std")
    with pytest.raises(ValueError, match="must include percentile"):
        config.Metrics(rules=["otsu"])
    with pytest.raises(ValueError, match="'mass'"):
        config.Metrics(rules=["percentile", "dino"])


def test_top_k_is_the_set_iou_at_p_scores():
    rng = np.random.default_rng(0)
    maps = rng.integers(0, 4, (6, 5, 7)).astype(np.float32)  # many ties
    masks = rng.random((6, 5, 7)) < 0.3
    for p in (50, 80, 97):
        kept = binarize.top_k(maps, p)
        assert (kept.sum(axis=(1, 2)) == metrics.top_k_size(35, [p])[0]).all()
        np.testing.assert_allclose(metrics.shared_interest_scores(kept, masks)["iou"],
                                   metrics.iou(maps, masks, [p])[:, 0])


def test_mass_keeps_the_smallest_top_set_holding_the_share_by_hand():
    maps = np.array([[[4, 1], [3, 2]], [[3, 2], [3, 2]], [[0, 0], [0, 0]]], np.float32)
    kept = binarize.mass(maps, 60)
    np.testing.assert_array_equal(kept[0], [[True, False], [True, False]])  # 7 of 10 >= 6
    np.testing.assert_array_equal(kept[1], [[True, False], [True, False]])  # exactly 6 of 10
    assert not kept[2].any()
    np.testing.assert_array_equal(binarize.mass(maps[:1], 100)[0], maps[0] > 0)


def _dino_mass(flat: np.ndarray, share: float) -> np.ndarray:
    """DINO's visualize_attention.py: ascending sort, normalised cumulative sum > 1 - share."""
    val, idx = torch.sort(torch.from_numpy(flat))
    val /= torch.sum(val, dim=1, keepdim=True)
    keep = torch.cumsum(val, dim=1) > (1 - share)
    return torch.gather(keep, 1, torch.argsort(idx, dim=1)).numpy()


def test_mass_equals_dinos_code_on_random_maps():
    maps = np.random.default_rng(1).random((20, 9, 11)).astype(np.float32) ** 3
    expected = _dino_mass(maps.reshape(20, -1).astype(np.float64), 0.6).reshape(maps.shape)
    np.testing.assert_array_equal(binarize.mass(maps, 60), expected)


def test_mass_breaks_ties_by_ascending_index_like_a_stable_sort():
    maps = np.random.default_rng(2).integers(0, 4, (30, 6, 7)).astype(np.float32)  # many ties
    maps[0] = 0
    flat = maps.reshape(30, -1).astype(np.float64)
    order = np.argsort(-flat, axis=1, kind="stable")  # the top-k order, sorted outright
    held = np.cumsum(np.take_along_axis(flat, order, axis=1), axis=1)
    for share in (10, 60, 100):
        k = np.minimum((held < held[:, -1:] * share / 100).sum(axis=1) + 1, 42)
        k[0] = 0  # an all-zero map keeps nothing
        expected = np.zeros(flat.shape, bool)
        np.put_along_axis(expected, order, np.arange(42) < k[:, None], axis=1)
        np.testing.assert_array_equal(binarize.mass(maps, share), expected.reshape(maps.shape))


def test_max_box_boxes_the_largest_component_by_hand():
    m = np.zeros((2, 6, 8), np.float32)
    m[0, 0, 0] = 10  # a one-pixel peak
    m[0, 2:4, 3] = m[0, 4, 4] = m[0, 5, 6] = 2  # diagonal touch joins (4, 4) to the column
    m[0, 5, 7] = 1.4  # below 15 % of 10: not part of anything
    kept = binarize.max_box(m, 15)
    want = np.zeros((6, 8), bool)
    want[2:5, 3:5] = True
    np.testing.assert_array_equal(kept[0], want)
    assert not kept[1].any()  # all zero: nothing above a zero maximum


def test_max_box_equals_skimage_components():
    rng = np.random.default_rng(2)
    maps = rng.random((12, 10, 13)).astype(np.float32) ** 4
    kept = binarize.max_box(maps, 15)
    for i, x in enumerate(maps):
        regions = measure.regionprops(measure.label(x > x.max() * np.float32(0.15),
                                                    connectivity=2))
        largest = max(regions, key=lambda r: (r.area, -r.label))  # first among equal sizes
        y0, x0, y1, x1 = largest.bbox
        want = np.zeros(x.shape, bool)
        want[y0:y1, x0:x1] = True
        np.testing.assert_array_equal(kept[i], want)


def test_otsu_equals_skimage():
    rng = np.random.default_rng(3)
    maps = np.concatenate([rng.random((8, 12, 9)) ** 2, rng.gamma(0.5, size=(8, 12, 9)),
                           np.full((1, 12, 9), 0.3)]).astype(np.float32)
    kept = binarize.otsu(maps)
    for i, x in enumerate(maps.astype(np.float64)):
        np.testing.assert_array_equal(kept[i], x > filters.threshold_otsu(x))
    assert not kept[-1].any()


def test_std_is_min_max_then_mean_plus_k_std():
    x = np.array([[[0, 1], [2, 7]]], np.float32)
    unit = (x - 0) / 7
    want = unit >= unit.mean() + 0.5 * unit.std()
    np.testing.assert_array_equal(binarize.std(x, 0.5), want)
    assert binarize.RULES["std"].masks(x).sum() == 1


def test_rules_reject_negative_maps():
    with pytest.raises(ValueError, match="non-negative"):
        binarize.RULES["otsu"].masks(-np.ones((1, 2, 2)))


def _planted_scores() -> pd.DataFrame:
    """Three models, two layers; layer 1 is best under every rule, the mass and otsu rules
    rank the models in reverse of IoU@90."""
    rows = []
    per_rule = {"iou": [0.1, 0.2, 0.3], "iou_mass": [0.6, 0.5, 0.4], "iou_otsu": [0.3, 0.2, 0.1]}
    for metric, values in per_rule.items():
        for model, value in zip(["a", "b", "c"], values, strict=True):
            for layer, shift in ((0, -0.05), (1, 0.0)):
                for image, noise in (("x", -0.01), ("y", 0.01)):
                    for threshold in ([50, 90] if metric == "iou" else [np.nan]):
                        rows.append({"image_id": image, "model": model, "variant": "frozen",
                                     "method": "cls", "layer": layer, "head": -1,
                                     "target": "union", "metric": metric,
                                     "threshold": threshold,
                                     "value": value + shift + noise + (threshold == 50)})
    scores = pd.DataFrame(rows)
    extra = scores.iloc[:1].assign(head=0, value=5.0)  # a single head never counts
    return pd.concat([scores, extra], ignore_index=True)


def test_conventions_table_on_a_planted_frame():
    table, taus = binarize.conventions_table(_planted_scores(), 90)
    assert list(table.columns) == ["model", "variant", "method", "percentile", "mass", "otsu",
                                   "percentile layer", "mass layer", "otsu layer"]
    np.testing.assert_allclose(table["percentile"], [0.1, 0.2, 0.3])
    np.testing.assert_allclose(table["mass"], [0.6, 0.5, 0.4])
    assert (table[["percentile layer", "mass layer", "otsu layer"]] == 1).all().all()
    pairs = {(r.rule_a, r.rule_b): r for r in taus.itertuples()}
    assert set(pairs) == {("percentile", "mass"), ("percentile", "otsu"), ("mass", "otsu")}
    for (a, b), row in pairs.items():
        want = stats.kendalltau(table[a], table[b])
        assert row.tau == pytest.approx(want.statistic) and row.p == pytest.approx(want.pvalue)
        assert row.n == 3
    assert pairs[("percentile", "mass")].tau == pytest.approx(-1)
    assert pairs[("mass", "otsu")].tau == pytest.approx(1)


def test_scoring_adds_each_rules_iou_of_the_head_mean_maps(tmp_path):
    from sightline import data, scoring, synthetic
    from sightline.geometry import Geometry

    root = synthetic.make_synthetic(tmp_path, n_annotated=3, n_pool=0, seed=4)
    targets = scoring.build_targets(data.load_wikichurches(root).samples, Geometry(), 16)
    rng = np.random.default_rng(5)
    maps = {0: rng.random((3, 3, 4, 4), dtype=np.float32) ** 3,
            2: rng.random((3, 1, 4, 4), dtype=np.float32)}
    maps[2][1] = 0  # an all-zero map scores NaN
    plain = scoring.score_maps(maps, targets, [90], 16)
    table = scoring.score_maps(maps, targets, [90], 16, tuple(binarize.RULES))
    assert set(table["metric"]) - set(plain["metric"]) == {"iou_mass", "iou_max", "iou_otsu",
                                                           "iou_std"}
    for name, rule in binarize.RULES.items():
        if rule.masks is None:
            continue
        rows = table[table["metric"] == rule.metric]
        assert (rows["head"] == -1).all() and len(rows) == 2 * len(targets.masks)
        np.testing.assert_array_equal(rows["threshold"].unique(), [rule.threshold])
        blank_image = int(np.flatnonzero(targets.image_index == 1)[0])
        for t, layer, column in [(0, 0, 2), (len(targets.masks) - 1, 2, 0), (blank_image, 2, 0)]:
            i = targets.image_index[t]
            up = metrics.upsample(maps[layer][i, column], 16)[None]
            want = metrics.shared_interest_scores(rule.masks(up), targets.masks[t][None])["iou"]
            if not up.any():
                want = [np.nan]
            got = rows[(rows["image_id"] == targets.image_ids[i]) & (rows["layer"] == layer)
                       & (rows["target"] == targets.target[t])]["value"]
            np.testing.assert_allclose(got, want, err_msg=name)
        assert rows["value"].isna().sum() == (targets.image_index == 1).sum()
