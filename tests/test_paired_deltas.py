"""Q2 shift table on planted scores: a known shift is found, a null one is not."""

import numpy as np
import pandas as pd
import pytest

from sightline import paired_deltas, registry, stats

SESOI = registry.sesoi_defaults()


def planted(n=30, seed=0):
    """iou@90 and mse of one model: full moves IoU up by 0.06 and MSE down; lora does nothing."""
    rng = np.random.default_rng(seed)
    frozen_iou, frozen_mse = rng.uniform(0.1, 0.3, n), rng.uniform(0.5, 1.0, n)
    rows = []

    def add(variant, iou, mse):
        for i in range(n):
            base = {"image_id": f"img{i}", "model": "vit", "variant": variant, "method": "cls",
                    "layer": 3, "head": -1, "target": "union", "feature": "union"}
            rows.append({**base, "metric": "iou", "threshold": 90.0, "value": iou[i]})
            rows.append({**base, "metric": "mse", "threshold": np.nan, "value": mse[i]})
            rows.append({**base, "target": "box0", "feature": "Portal", "metric": "iou",
                         "threshold": 90.0, "value": iou[i] / 2})

    add("frozen", frozen_iou, frozen_mse)
    for s in range(2):
        add(f"full.s{s}", frozen_iou + 0.06 + rng.normal(0, 0.02, n),
            frozen_mse - 0.1 + rng.normal(0, 0.02, n))
        add(f"lora.s{s}", frozen_iou + rng.normal(0, 0.02, n), frozen_mse + rng.normal(0, 0.02, n))
    rows += [{**rows[0], "model": "baseline", "variant": "baseline"}]
    return pd.DataFrame(rows), frozen_iou


def test_planted_shift_is_found_and_null_shift_is_not():
    scores, frozen_iou = planted()
    table = paired_deltas.deltas(scores, headline_percentile=90, sesoi=SESOI, n_boot=500)
    assert list(table.columns) == paired_deltas.COLUMNS
    got = table.set_index(["strategy", "metric"])
    assert got.loc[("full", "iou"), "delta"] == pytest.approx(0.06, abs=0.01)
    assert got.loc[("full", "iou"), "mean_frozen"] == pytest.approx(frozen_iou.mean())
    assert got.loc[("full", "iou"), "n_seeds"] == 2 and got.loc[("full", "iou"), "n"] == 30
    assert got.loc[("full", "iou"), "verdict"] == "enhanced"
    assert got.loc[("full", "mse"), "verdict"] == "enhanced"  # lower MSE is better
    # the null shift: noise only, its interval well inside the 0.01 margin
    assert got.loc[("lora", "iou"), "verdict"] == "equivalent"
    assert got.loc[("lora", "iou"), "ci_low"] < 0 < got.loc[("lora", "iou"), "ci_high"]
    assert got.loc[("lora", "iou"), "p_tost"] < 0.05 < got.loc[("lora", "iou"), "p_holm"]
    assert set(table["margin"]) == {SESOI["iou"], SESOI["mse"]}
    # Holm over the 4 rows of the family (2 strategies x 2 metrics at threshold 90)
    assert np.allclose(table["p_holm"], stats.holm(table["p_wilcoxon"].to_numpy()))


def test_worse_direction_is_degraded_and_zero_shift_equivalent():
    scores, _ = planted()
    flipped = scores.copy()
    tuned = flipped["variant"].str.startswith("full")
    flipped.loc[tuned & (flipped["metric"] == "iou"), "value"] -= 0.12
    table = paired_deltas.deltas(flipped, headline_percentile=90, sesoi=SESOI, n_boot=200).set_index(
        ["strategy", "metric"])
    assert table.loc[("full", "iou"), "verdict"] == "degraded"
    same = scores.copy()
    probe = same[same["variant"] == "frozen"].assign(variant="linear_probe.s0")
    table = paired_deltas.deltas(pd.concat([same, probe]), headline_percentile=90, sesoi=SESOI,
                         n_boot=200)
    row = table.set_index(["strategy", "metric"]).loc[("linear_probe", "iou")]
    assert row["delta"] == 0 and np.isnan(row["p_wilcoxon"]) and row["verdict"] == "equivalent"


def test_significance_alone_is_not_a_verdict():
    """A tiny but consistent shift (Holm p far below alpha, |Δ| below the margin) is not
    enhanced; a large shift on a few noisy images is inconclusive, not preserved."""
    scores, _ = planted()
    tuned = scores["variant"].str.startswith("full") & (scores["metric"] == "iou")
    frozen = scores[scores["variant"] == "frozen"].set_index(["image_id", "metric", "target"])
    tiny = scores.copy()
    key = pd.MultiIndex.from_frame(tiny.loc[tuned, ["image_id", "metric", "target"]])
    tiny.loc[tuned, "value"] = frozen.loc[key, "value"].to_numpy() + 0.003
    table = paired_deltas.deltas(tiny, headline_percentile=90, sesoi=SESOI, n_boot=200).set_index(
        ["strategy", "metric"])
    row = table.loc[("full", "iou")]
    assert row["p_holm"] < 1e-4 and row["delta"] == pytest.approx(0.003)
    assert row["verdict"] == "equivalent"
    rng = np.random.default_rng(1)
    few = scores[scores["image_id"].isin([f"img{i}" for i in range(6)])].copy()
    noisy = few["variant"].str.startswith("full") & (few["metric"] == "iou")
    few.loc[noisy, "value"] += rng.normal(0, 0.3, noisy.sum())
    row = paired_deltas.deltas(few, headline_percentile=90, sesoi=SESOI, n_boot=200).set_index(
        ["strategy", "metric"]).loc[("full", "iou")]
    assert abs(row["delta"]) >= SESOI["iou"] and row["verdict"] == "inconclusive"


def test_a_metric_without_a_margin_is_an_error():
    scores, _ = planted()
    with pytest.raises(KeyError, match="stats.sesoi"):
        paired_deltas.deltas(scores, headline_percentile=90, sesoi={"iou": 0.01})


def test_target_deltas_pair_each_box_and_image_with_its_frozen_self():
    scores, frozen_iou = planted()
    boxes = paired_deltas.target_deltas(scores, metric="iou", threshold=90)
    full = boxes[boxes["strategy"] == "full"]
    assert len(full) == 30 and set(full["feature"]) == {"Portal"}
    assert full["delta"].mean() == pytest.approx(0.03, abs=0.01)
    images = paired_deltas.target_deltas(scores, metric="iou", threshold=90, boxes=False)
    full = images[images["strategy"] == "full"].set_index("image_id")
    tuned = scores[scores["variant"].str.startswith("full") & (scores["target"] == "union")
                   & (scores["metric"] == "iou")].groupby("image_id")["value"].mean()
    assert np.allclose(full["delta"], tuned[full.index] - frozen_iou[
        [int(i[3:]) for i in full.index]])
    assert set(full["feature"]) == {"union"}
