"""Q2's tables and sentences around the shift (studies.shift) on planted frames."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from sightline.studies import shift as q2

SPECS = {"vit": SimpleNamespace(readout="cls"), "cnn": SimpleNamespace(readout="cnn")}


def planted_deltas():
    """Delta rows of vit (cls, rollout at layers 1-3; gradcam at layer 0) and cnn (gradcam at
    stages 1-2), each for lora and linear_probe, IoU at 50 and 90 and coverage."""
    rows = []
    for model, methods in (("vit", {"cls": [1, 2, 3], "rollout": [1, 2, 3], "gradcam": [0]}),
                           ("cnn", {"gradcam": [1, 2]})):
        for method, layers in methods.items():
            for layer in layers:
                for strategy in ("lora", "linear_probe"):
                    for metric, threshold in (("iou", 50.0), ("iou", 90.0), ("coverage", np.nan)):
                        rows.append({"model": model, "strategy": strategy, "method": method,
                                     "layer": layer, "metric": metric, "threshold": threshold,
                                     "delta": 0.0 if strategy == "linear_probe" else layer / 10,
                                     "verdict": "equivalent" if strategy == "linear_probe"
                                     else "enhanced"})
    return pd.DataFrame(rows)


def test_headline_rows_are_each_models_own_map_and_gradcam_at_their_last_layer():
    rows = q2.headline(planted_deltas(), SPECS, 90)
    kept = set(zip(rows["model"], rows["method"], rows["layer"], strict=True))
    assert kept == {("vit", "cls", 3), ("vit", "gradcam", 0), ("cnn", "gradcam", 2)}
    assert set(rows["threshold"].dropna()) == {90.0} and rows["threshold"].isna().any()
    assert set(q2.fine_tuned(rows)["strategy"]) == {"lora"}
    assert q2.probe_sentence(rows) == ("Linear probe rows (attention maps bit-identical to the "
                                       "frozen model's by construction): cls: max |Δ| = 0, "
                                       "gradcam: max |Δ| = 0; verdicts: equivalent.")
    assert q2.probe_sentence(q2.fine_tuned(rows)) is None


def test_margins_name_only_the_metrics_in_the_table():
    assert q2.margins_sentence({"iou": 0.01, "coverage": 0.02, "mse": 0.5}, planted_deltas()) == (
        "Margins (smallest effect size of interest): iou ±0.01, coverage ±0.02.")


def test_by_feature_tests_the_types_with_enough_boxes_with_kruskal_wallis():
    rng = np.random.default_rng(0)
    features = ["Portal"] * 4 + ["Tower"] * 5 + ["Window"] * 2
    per_box = pd.DataFrame({"model": "vit", "strategy": "lora", "method": "cls", "layer": 3,
                            "image_id": [f"i{k}" for k in range(11)], "feature": features,
                            "delta": rng.normal(0, 1, 11)})
    table, caption = q2.by_feature(per_box, 90)
    row = table.loc[("vit", "lora", "cls")]
    assert row["Window"] == pytest.approx(per_box["delta"][9:].mean())
    portal, tower = per_box["delta"][:4], per_box["delta"][4:9]
    expected = sps.kruskal(portal, tower)  # Window has 2 boxes: left out of the test
    assert row["Kruskal-Wallis H"] == pytest.approx(expected.statistic)
    assert row["p"] == pytest.approx(expected.pvalue)
    assert caption == ("Per feature type: mean ΔIoU@90 against each box on its own, headline "
                       "maps; boxes per type: Portal 4, Tower 5, Window 2. Kruskal–Wallis over "
                       "the types with 3 boxes or more.")


def planted_scores():
    """Union IoU@90 of vit, frozen and lora.s0, layers 1-2, heads -1 (mean), 0 and 1."""
    rows = []
    values = {("frozen", 1): 0.3, ("frozen", 2): 0.5, ("lora.s0", 1): 0.6, ("lora.s0", 2): 0.4}
    for (variant, layer), value in values.items():
        for head, shift in ((-1, 0.0), (0, 0.1 * layer), (1, -0.05)):
            for image in ("a", "b"):
                rows.append({"image_id": image, "model": "vit", "variant": variant,
                             "method": "cls", "layer": layer, "head": head, "target": "union",
                             "metric": "iou", "threshold": 90.0,
                             "value": value + (shift if variant == "lora.s0" else 0)})
    return pd.DataFrame(rows)


def test_best_layers_before_and_after():
    best = q2.best_layers(planted_scores(), 90)
    assert best.to_dict("records") == [{
        "model": "vit", "strategy": "lora", "method": "cls", "best layer": 1, "IoU@90": 0.6,
        "best layer frozen": 2, "IoU@90 frozen": 0.5}]


def test_heads_changed_most_come_first():
    changed = q2.heads_changed(planted_scores(), 90, top=3)  # by |Δ|; the 4th (0.1) left out
    assert changed[["layer", "head"]].values.tolist() == [[1, 0], [1, 1], [2, 1]]
    assert changed["delta"].tolist() == pytest.approx([0.4, 0.25, -0.15])
    assert set(changed["strategy"]) == {"lora"}


def test_accuracy_against_shift_correlates_only_over_enough_runs():
    points = pd.DataFrame({"model": [f"vit{k}" for k in range(6)], "strategy": "lora",
                           "method": "cls", "delta": [0.1, 0.3, 0.2, 0.5, 0.4, 0.6],
                           "test_accuracy": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]})
    specs = {f"vit{k}": SimpleNamespace(readout="cls") for k in range(6)}
    rho = sps.spearmanr(points["test_accuracy"], points["delta"])
    assert q2.accuracy_sentence(points, specs) == (
        f"Spearman ρ = {rho.statistic:.2f} (p = {rho.pvalue:.2g}) over 6 model × strategy "
        "runs, each run's own map kind.")
    assert q2.accuracy_sentence(points.iloc[:2], specs) == (
        "The plot rests on 2 fine-tuned runs (2 points: 1 map kinds); too few (under 6) for a "
        "correlation: a picture, not a test.")


def test_accuracy_points_read_each_map_at_its_last_layer_with_its_runs_accuracy():
    accuracy = pd.Series({("vit", "lora"): 0.7, ("cnn", "lora"): 0.4}, name="test_accuracy")
    accuracy.index.names = ["model", "strategy"]
    points = q2.accuracy_points(planted_deltas(), accuracy, 90)
    assert set(zip(points["model"], points["method"], points["layer"], strict=True)) == {
        ("vit", "cls", 3), ("vit", "rollout", 3), ("vit", "gradcam", 0), ("cnn", "gradcam", 2)}
    assert points.set_index("model")["test_accuracy"].to_dict() == {"vit": 0.7, "cnn": 0.4}
