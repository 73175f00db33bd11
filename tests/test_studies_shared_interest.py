"""The SI notebook's analyses (`studies.shared_interest`) on planted headline frames: Table 1,
its right / wrong split, the tests against scipy, the case counts and the generated prose."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sightline.studies import shared_interest as si

MODELS = {"resnet101": "resnet101-tiny-random", "swin_t": "swin_t-tiny-random",
          "cait_s": "cait_s-tiny-random"}


def planted_wide(n_images=12, seed=0):
    """Headline rows of 3 models x 2 methods: Grad-CAM's IoU is XRAI's + 0.1 plus noise; the
    first half of the images are classified right, all models agree on the first 4."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        for key, name in MODELS.items():
            xrai = rng.uniform(0.1, 0.4)
            for method, iou in (("gradcam", xrai + 0.1 + rng.normal(0, 0.02)), ("xrai", xrai)):
                rows.append({"image_id": f"im{i:02d}", "model": name, "method": method,
                             "iou": iou, "gtc": rng.uniform(), "sc": rng.uniform(), "key": key,
                             "correct": float(i < n_images // 2), "all_agree": i < 4})
    return pd.DataFrame(rows)


def test_table1_means_and_differences_from_the_paper_by_hand():
    wide = planted_wide()
    wide.loc[0, "iou"] = np.nan  # one map without IoU: 11 images for resnet101 gradcam
    ours = si.table1(wide, MODELS).set_index(["method", "key"])
    own = wide[(wide["method"] == "gradcam") & (wide["key"] == "resnet101")]
    row = ours.loc[("gradcam", "resnet101")]
    assert row["iou"] == pytest.approx(own["iou"].mean()) and row["images"] == 11
    assert row["model"] == "resnet101-tiny-random" and row["iou_paper"] == 0.216
    assert row["sc_diff"] == pytest.approx(own["sc"].mean() - 0.466)
    assert ours.loc[("xrai", "cait_s"), "images"] == 12


def test_table1_by_correct_splits_by_the_prediction():
    wide = planted_wide(n_images=24)
    split = si.table1_by_correct(wide, MODELS).set_index(["method", "model"])
    own = wide[(wide["method"] == "xrai") & (wide["key"] == "swin_t")]
    row = split.loc[("xrai", "swin_t-tiny-random")]
    right, wrong = own[own["correct"] == 1], own[own["correct"] == 0]
    assert (row["n_right"], row["n_wrong"]) == (12, 12)
    assert row["iou_right"] == pytest.approx(right["iou"].mean())
    assert row["gtc_wrong"] == pytest.approx(wrong["gtc"].mean())
    assert row["p_mwu"] == pytest.approx(stats.mannwhitneyu(right["iou"], wrong["iou"]).pvalue)
    few = si.table1_by_correct(planted_wide(n_images=12), MODELS)
    assert few["p_mwu"].isna().all()  # 6 images a side: reported, not tested


def test_tests_agree_with_scipy_on_all_images_and_the_agreement_subset():
    wide = planted_wide()
    tested = si.tests(wide)
    first = tested[tested["subset"] == "all images"].set_index(["test", "term"])
    pairs = wide.pivot_table(index=["image_id", "model"], columns="method", values="iou")
    paired = stats.ttest_rel(pairs["gradcam"], pairs["xrai"])
    row = first.loc[("paired t", "gradcam - xrai")]
    assert row["statistic"] == pytest.approx(paired.statistic) and row["n"] == 36
    assert row["p"] == pytest.approx(paired.pvalue) and row["dof"] == "35"
    welch = stats.ttest_ind(wide.loc[wide["method"] == "gradcam", "iou"],
                            wide.loc[wide["method"] == "xrai", "iou"], equal_var=False)
    assert first.loc[("Welch t", "gradcam - xrai"), "statistic"] == pytest.approx(welch.statistic)
    xrai = wide[wide["method"] == "xrai"]
    anova = stats.f_oneway(*(g["iou"] for _, g in xrai.groupby("model")))
    assert first.loc[("one-way ANOVA", "model | xrai"), "statistic"] == pytest.approx(
        anova.statistic)
    assert (first.loc["Tukey HSD"].shape[0], first.loc["two-way ANOVA"].shape[0]) == (6, 3)
    agree = tested[tested["subset"] == "all models agree"].set_index(["test", "term"])
    assert agree.loc[("paired t", "gradcam - xrai"), "n"] == 12  # 4 images x 3 models
    assert list(tested.columns[:5]) == ["subset", "test", "term", "statistic", "dof"]


def test_case_table_counts_cases_in_the_taxonomys_order():
    wide = pd.DataFrame({"method": "xrai", "model": "m",
                         "case": ["distractor", "human aligned", "human aligned", None,
                                  "sufficient subset"]})
    table = si.case_table(wide)
    assert list(table.columns) == ["human aligned", "sufficient subset", "distractor"]
    assert table.loc[("xrai", "m")].tolist() == [2, 1, 1]


def test_notes_by_hand():
    predictions = pd.DataFrame({"image_id": ["a", "a", "b", "b", "c", "c"],
                                "key": ["x", "y"] * 3, "model": ["X", "Y"] * 3,
                                "correct": [1.0, 0.0, 1.0, 1.0, np.nan, 0.0],
                                "all_agree": [True, True, False, False, False, False]})
    assert si.agreement_note(predictions) == (
        "All 2 models predict the same class on **1** of 3 images (the agreement subset below).")
    assert si.agreement_note(predictions.assign(all_agree=False)).endswith(
        "(the agreement subset below: empty here, so not tested).")
    assert si.accuracy(predictions, 3).loc["X"].tolist() == [1.0, 3]
    wide = pd.DataFrame({"iou": [0.1, np.nan], "sc": [np.nan, np.nan], "gtc": [0.2, 0.3]})
    assert si.missing_note(pd.DataFrame(index=range(1200)), wide).startswith(
        "1,200 score rows; 2 of 2 maps lack a score at the headline threshold (iou: 1, sc: 2, "
        "gtc: 0;")


def test_paper_summary_reads_the_paired_test_and_says_random_weights():
    wide = planted_wide()
    ours = si.table1(wide, MODELS)
    tested = si.tests(wide)
    replication = SimpleNamespace(
        section=SimpleNamespace(models=[SimpleNamespace(key="swin_t", weights="random"),
                                        SimpleNamespace(key="resnet101", weights="pretrained")]),
        rule=("std", 1.0), mask_rule=("std", 1.0))
    text = si.paper_summary(ours, wide, tested, replication)
    means = wide.groupby("method")["iou"].mean()
    lines = text.split("\n")
    assert lines[0] == (f"- Mean IoU: Grad-CAM **{means['gradcam']:.3f}** (paper 0.192), XRAI "
                        f"**{means['xrai']:.3f}** (paper 0.145); paper: Grad-CAM higher, p < 0.001.")
    assert lines[1].startswith("- Here Grad-CAM's IoU is significantly higher: paired t = ")
    assert "n = 36 pairs" in lines[1]
    assert lines[2].startswith("- Largest IoU difference from Table 1: ")
    assert lines[3].startswith("- **Random weights** (swin_t): their numbers show the pipeline")
    assert lines[4].startswith("- Binarisation: ours (`std` at 1.0 for the saliency")
    real = SimpleNamespace(section=SimpleNamespace(models=[SimpleNamespace(weights="pretrained")]),
                           rule=("std", 1.0), mask_rule=("std", 1.0))
    flat = wide.assign(iou=wide["iou"].where(wide["method"] == "xrai", wide["iou"] - 0.1))
    text = si.paper_summary(si.table1(flat, MODELS), flat, si.tests(flat), real)
    assert "random weights" not in text and "no significant difference" in text
