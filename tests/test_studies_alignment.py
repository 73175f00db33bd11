"""Q1's analyses (`sightline.studies.alignment`) on small planted score tables whose answers
are worked out by hand."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from sightline import registry, scoring
from sightline.studies import alignment as q1

IMAGES = [f"img{i}" for i in range(12)]


def _rows(model, method, layer, metric, values, *, threshold=90.0, target="union",
          feature="", head=-1, variant=None):
    return pd.DataFrame({
        "image_id": IMAGES[:len(values)], "model": model,
        "variant": variant or ("baseline" if model == "baseline" else "frozen"),
        "method": method, "layer": layer, "head": head, "target": target, "feature": feature,
        "metric": metric, "threshold": threshold, "value": values, "correct": pd.NA})


def _scores(frames, *, frame="model") -> q1.Scores:
    table = scoring.tidy(pd.concat(frames, ignore_index=True))
    by_frame = {"model": table} | ({"common": table} if frame == "both" else {})
    return q1.Scores(table, by_frame, q1.FRAMES[frame], len(IMAGES), 2 * len(IMAGES))


def _planted(frame="model") -> q1.Scores:
    """Model ``a``: layer 1 beats layer 0 on every image (IoU 0.5 against 0.1); model ``b``:
    method ``attn`` at 0.2 everywhere, ``cam`` at 0.3; one baseline at 0.05."""
    ones = np.ones(len(IMAGES))
    frames = [
        _rows("a", "attn", 0, "iou", 0.1 * ones), _rows("a", "attn", 1, "iou", 0.5 * ones),
        _rows("b", "attn", 0, "iou", 0.2 * ones), _rows("b", "cam", 3, "iou", 0.3 * ones),
        _rows("baseline", "centre", 0, "iou", 0.05 * ones),
        _rows("a", "attn", 1, "iou", 0.9 * ones, head=0),  # a single head: never read here
        _rows("a", "attn", 1, "iou", 0.7 * ones, threshold=50.0),
        _rows("a", "attn", 1, "iou", 0.4 * ones, target="box0", feature="Portal"),
    ]
    for metric, value in (("iou_rel", 0.25), ("coverage", 0.6), ("auc", 0.7), ("nss", 1.5),
                          ("pointing_game", 1.0)):
        threshold = 90.0 if metric == "iou_rel" else np.nan
        frames += [_rows(m, me, la, metric, value * ones, threshold=threshold)
                   for m, me, la in (("a", "attn", 0), ("a", "attn", 1), ("b", "attn", 0),
                                     ("b", "cam", 3), ("baseline", "centre", 0))]
    return _scores(frames, frame=frame)


def _no_sanity() -> pd.DataFrame:
    return pd.DataFrame(columns=["model", "variant", "method", "mean", "not_model_sensitive"])


def test_pick_reads_head_mean_rows_of_one_metric_target_and_threshold():
    scores = _planted()
    rows = scores.pick("iou", 90)
    assert set(rows["head"]) == {-1} and set(rows["target"]) == {"union"}
    assert len(rows) == 5 * len(IMAGES)
    assert scores.pick("iou", 50)["value"].tolist() == pytest.approx([0.7] * len(IMAGES))
    assert set(scores.pick("iou", 90, boxes=True)["feature"]) == {"Portal"}
    assert len(scores.pick("iou")) == 6 * len(IMAGES)  # every threshold


def test_layers_and_headline_pick_the_best_layer_and_method():
    scores = _planted()
    by_layer = q1.layers(scores, 90)
    assert by_layer.set_index(q1.KEY)["iou"].to_dict() == pytest.approx({
        ("a", "attn", 0): 0.1, ("a", "attn", 1): 0.5, ("b", "attn", 0): 0.2, ("b", "cam", 3): 0.3,
        ("baseline", "centre", 0): 0.05})
    assert q1.best_layers(by_layer)["label"].tolist() == [
        "a · attn", "b · attn", "b · cam", "baseline · centre"]
    maps = q1.headline(scores, 90, seed=0)
    assert maps[q1.KEY].values.tolist() == [["a", "attn", 1], ["b", "cam", 3],
                                            ["baseline", "centre", 0]]
    # the same choice on every half: the cross-fitted value is the in-sample one
    assert maps["cross_fit"].tolist() == pytest.approx([0.5, 0.3, 0.05])
    assert maps["iou"].tolist() == pytest.approx([0.5, 0.3, 0.05])


def test_leaderboard_cross_fits_the_layer_and_reads_the_others_at_it():
    board = q1.leaderboard(_planted(), 90, sanity_flags=_no_sanity(), n_boot=200, seed=0)
    table = board.table
    assert table[["model", "method"]].values.tolist() == [
        ["a", "attn"], ["b", "cam"], ["b", "attn"], ["baseline", "centre"]]
    first = table.iloc[0]
    assert first["IoU@90 cross-fitted"] == pytest.approx(0.5)
    assert first["IoU@90 in-sample"] == pytest.approx(0.5)
    assert first["optimism"] == pytest.approx(0.0) and first["layer stability"] == 1.0
    assert first["best layer (in-sample)"] == 1
    assert (first["CI low"], first["CI high"]) == pytest.approx((0.5, 0.5))
    assert [first[c] for c in ("IoU@90 / max", "coverage", "AUC", "NSS", "pointing game")] == \
        pytest.approx([0.25, 0.6, 0.7, 1.5, 1.0])
    assert table["n"].tolist() == [12] * 4 and table["kind"].tolist()[-1] == "baseline"
    assert "common frame" not in " ".join(table.columns)
    assert board.notes() == ["Frame of the headline column: **model**."]
    assert board.optimism().endswith("on these 12 images.")
    assert board.caption().startswith("n: images with a score, of 12. Cross-fitted:")
    assert q1.headline_maps(table, 90) == {"a": ("attn", 1), "b": ("cam", 3),
                                           "baseline": ("centre", 0)}


def test_leaderboard_optimism_when_the_best_layer_wins_by_chance():
    """Two layers of equal mean whose per-image values alternate: in-sample the best layer
    looks better than it is; cross-fitted it is no better than either."""
    noise = np.resize([0.4, 0.0], len(IMAGES)) + np.linspace(0, 0.01, len(IMAGES))
    frames = [_rows("a", "attn", 0, "iou", noise), _rows("a", "attn", 1, "iou", noise[::-1])]
    frames += [_rows("a", "attn", la, m, np.ones(len(IMAGES)), threshold=t)
               for la in (0, 1) for m, t in (("iou_rel", 90.0), ("coverage", np.nan),
                                            ("auc", np.nan), ("nss", np.nan),
                                            ("pointing_game", np.nan))]
    board = q1.leaderboard(_scores(frames), 90, sanity_flags=_no_sanity(), n_boot=200, seed=0)
    row = board.table.iloc[0]
    assert row["IoU@90 in-sample"] == pytest.approx(max(noise.mean(), noise[::-1].mean()))
    assert row["optimism"] == pytest.approx(row["IoU@90 in-sample"] - row["IoU@90 cross-fitted"])
    assert row["IoU@90 cross-fitted"] <= row["IoU@90 in-sample"]
    assert board.optimism() == (f"In-sample selection of the best layer overstates IoU@90 by "
                                f"{row['optimism']:.3f} on average (up to {row['optimism']:.3f}) "
                                "on these 12 images.")
    tiny = board.table.assign(optimism=-1e-6)  # prints as 0.000, never -0.000
    assert "by 0.000 on average (up to 0.000)" in dataclasses.replace(board, table=tiny).optimism()


def test_leaderboard_both_frames_and_the_sanity_columns():
    flags = pd.DataFrame({"model": ["a", "b"], "variant": ["frozen", "full"],
                          "method": ["attn", "cam"], "mean": [0.8, 0.1],
                          "not_model_sensitive": [True, False]})
    board = q1.leaderboard(_planted("both"), 90, sanity_flags=flags, n_boot=100, seed=0)
    table = board.table.set_index(["model", "method"])
    assert table.loc[("a", "attn"), "IoU@90 cross-fitted, common frame"] == pytest.approx(0.5)
    assert table.loc[("a", "attn"), q1.SANITY] == 0.8  # only the frozen weights' check
    assert table.loc[("a", "attn"), "not_model_sensitive"]
    assert np.isnan(table.loc[("b", "cam"), q1.SANITY])
    elsewhere = q1.leaderboard(_planted(), 90, sanity_flags=flags[flags["variant"] == "full"],
                               n_boot=100, seed=0)
    assert q1.SANITY not in elsewhere.table
    assert elsewhere.notes()[1].startswith("The randomisation check ran on full weights, not on "
                                           "the frozen ones")


def test_by_correct_splits_the_held_out_values_by_the_probes_marks():
    board = q1.leaderboard(_planted(), 90, sanity_flags=_no_sanity(), n_boot=100, seed=0)
    marks = {i: k % 3 != 0 for k, i in enumerate(IMAGES)}  # 8 right, 4 wrong
    split, no_probe = q1.by_correct(board, {("a", "frozen"): marks, ("b", "frozen"): None})
    assert split[["model", "method", "n_right", "n_wrong"]].values.tolist() == [["a", "attn", 8, 4]]
    assert split["note"].iloc[0] == "not tested: fewer than 10 images on a side"
    assert no_probe == ["b"]
    assert q1.by_correct_caption(board, no_probe).endswith("No probe, no prediction: b.")
    assert q1.by_correct_caption(board, ["a", "b"]).startswith("Not split: no model here has a "
                                                               "linear probe")


def test_by_correct_p_value_is_mann_whitney_on_the_two_sides():
    values = np.arange(24, dtype=float) / 100
    ids = [f"i{k:02d}" for k in range(24)]
    per_image = pd.DataFrame({"model": "a", "variant": "frozen", "method": "attn",
                              "image_id": ids, "value": values})
    summary = pd.DataFrame({"model": ["a"], "variant": ["frozen"], "method": ["attn"]})
    board = q1.Leaderboard(pd.DataFrame(), summary, per_image, "model", 90, 24, [])
    right = {i: k >= 12 for k, i in enumerate(ids)}
    split, _ = q1.by_correct(board, {("a", "frozen"): right})
    expected = sps.mannwhitneyu(values[12:], values[:12], alternative="two-sided").pvalue
    assert split["p_mwu"].iloc[0] == pytest.approx(expected)
    assert split["diff"].iloc[0] == pytest.approx(0.12)


def test_breakdowns_by_label_feature_threshold_and_summary():
    scores = _planted()
    maps = q1.headline(scores, 90, seed=0)
    union = q1.headline_iou(scores, maps, 90)
    labels = {i: "Gothic" if k < 6 else "Baroque" for k, i in enumerate(IMAGES)}
    per_label = q1.by_image_label(union, labels)
    assert per_label.loc["a · attn"].to_dict() == pytest.approx({"Baroque": 0.5, "Gothic": 0.5})
    regions = q1.headline_iou(scores, maps, 90, boxes=True)
    # 12 region rows over 3 headline maps count as 4 regions
    assert q1.by_feature(regions, len(maps), min_regions=5).empty
    assert q1.by_feature(regions, len(maps), min_regions=4).loc["a · attn", "Portal"] == \
        pytest.approx(0.4)
    sweep, ceiling = q1.threshold_sweep(scores, maps)
    assert sweep.set_index(["label", "threshold"])["iou"].to_dict() == pytest.approx({
        ("a · attn", 50.0): 0.7, ("a · attn", 90.0): 0.5, ("b · cam", 90.0): 0.3,
        ("baseline · centre", 90.0): 0.05})
    # IoU / (IoU relative to the best reachable) = the best reachable: 0.1/0.25 ... 0.5/0.25
    assert ceiling.loc[90.0] == pytest.approx(np.mean([0.4, 2.0, 0.8, 1.2, 0.2]))
    table = q1.summary(scores, maps)
    assert table.loc["iou@90", "a · attn"] == pytest.approx(0.5)
    assert table.loc["iou@50", "a · attn"] == pytest.approx(0.7)
    assert table.loc["coverage", "b · cam"] == pytest.approx(0.6)
    assert q1.summary_metrics(table, 90) == ["iou@90", "iou_rel@90", "iou@50", "coverage", "auc",
                                             "nss", "pointing_game"]


def test_a_planted_metric_joins_the_summary_at_its_rank():
    table = pd.DataFrame(index=["iou@90", "iou@50", "coverage", "nss", "dice@90", "dice", "spread"])
    dice = registry.Metric("dice", "Dice", True, True, len, summary_rank=1)  # thresholded
    spread = registry.Metric("spread", "spread", False, False, len)  # default rank: last
    with registry.METRICS.registered(dice), registry.METRICS.registered(spread):
        assert q1.summary_metrics(table, 90) == ["iou@90", "dice@90", "iou@50", "coverage", "nss",
                                                 "spread"]
    assert q1.summary_metrics(table, 90) == ["iou@90", "iou@50", "coverage", "nss"]
    assert q1.summary_metrics(table, 50) == ["iou@50", "coverage", "nss"]


def test_paired_tests_and_gallery_selection():
    rank = np.arange(len(IMAGES), dtype=float) / 100
    frames = [_rows("a", "attn", 0, "iou", 0.5 + rank), _rows("b", "cam", 0, "iou", 0.2 + rank / 2),
              _rows("baseline", "centre", 0, "iou", 0.05 + rank[::-1] / 4)]
    scores = _scores(frames)
    maps = q1.headline(scores, 90, seed=0)
    tests = q1.paired_tests(scores, maps, 90, n_boot=100, seed=0)
    assert tests.frame == "model" and len(tests.pairs) == 3
    pair = tests.pairs.set_index(["a", "b"]).loc[("a · attn", "b · cam")]
    assert abs(pair["mean_diff"]) == pytest.approx(0.3 + rank.mean() / 2)
    assert tests.sentences()[0] == "Frame of the paired tests: **model**."
    assert tests.sentences()[1].startswith("Friedman across 3 maps on 12 images: Q = 24.00")
    picked = q1.gallery(q1.headline_iou(scores, maps, 90), 2)
    assert picked == {"worst": ["img0", "img1"], "median": ["img5", "img6"],
                      "best": ["img11", "img10"]}


def test_randomisation_sentence_counts_fresh_steps():
    flags = pd.DataFrame({"model": ["a", "a", "b"]})
    steps = pd.DataFrame({"extracted": [0, 3, 1, 0]})
    ran = q1.randomisation_sentence(flags, steps)
    assert ran.startswith("For the models in `sanity.models`")
    assert ran.endswith("\n\nRandomisation test: 2 model(s), 2 of 4 steps extracted in this run "
                        "(the others from the cache).")
    assert q1.randomisation_sentence(flags.iloc[:0], steps.iloc[:0]) == (
        "Not run: `sanity.models` lists no model (the maps are not checked here).")


def test_reference_comparison_reads_each_models_headline_map(tmp_path):
    from sightline.studies import Study

    models = [{"key": "dinov2", "weights": "random", "size": "tiny"},
              {"key": "resnet50", "weights": "random", "size": "tiny"}]
    study = Study.from_sections(tmp_path / "tables", models=models,
                                dataset={"kind": "synthetic", "root": str(tmp_path / "data")})
    names = [study.names["dinov2"], study.names["resnet50"]]
    maps = pd.DataFrame({"model": [names[1], names[0], "baseline"],
                         "method": ["gradcam", "cls", "centre"], "layer": [4, 2, 0],
                         "iou": [0.3, 0.2, 0.1], "cross_fit": [0.25, 0.15, 0.1]})
    table = q1.reference_comparison(study, maps, 90)
    assert table.to_dict("list") == {
        "model": names, "weights": ["random", "random"],
        "ours: best method · layer": ["cls · 2", "gradcam · 4"],
        "ours: IoU@90 in-sample": [0.2, 0.3], "ours: IoU@90 cross-fitted": [0.15, 0.25],
        "reference study IoU@90": [0.082, 0.090]}
    assert not q1.comparable(study)  # random weights on synthetic data
    assert q1.reference_note(study).startswith("Not shown: this profile scores random-weight "
                                               "models on synthetic data, so")


LITE0 = {"key": "lite0", "source": "python", "weights": "pretrained",
         "factory": "sightline.models:packaged_efficientnet_lite0", "target_layer": "blocks.-1",
         "input": {"size": 224, "resize": "squash", "mean": "imagenet"}}


def test_the_prose_says_what_the_profile_has(tmp_path):
    """Planted profiles: real weights on own photographs, a random ViT beside them, a probe."""
    from sightline.studies import Study
    from test_coco import _scene

    _scene(tmp_path / "coco")
    coco = {"kind": "coco", "root": str(tmp_path / "coco")}
    vit = {"key": "dinov2", "weights": "random", "size": "tiny"}
    own = Study.from_sections(tmp_path / "t", models=[LITE0], dataset=coco)
    assert not own.synthetic and own.class_targets == {"lite0": "its own predicted class"}
    assert q1.reference_note(own).startswith("Not shown: this profile scores pretrained models "
                                             "on its own images (coco), so")
    assert q1.class_target_sentence(own) == ("The class each model's class-specific maps explain "
                                             "— **lite0** (gradcam, xrai): its own predicted class.")
    both = Study.from_sections(tmp_path / "t", models=[LITE0, vit], dataset=coco)
    assert both.class_targets == {"lite0": "its own predicted class", "dinov2-tiny-random": None}
    assert "; **dinov2-tiny-random** (chefer" in q1.class_target_sentence(both)
    assert "): none (no classifier head and no linear probe" in q1.class_target_sentence(both)
    assert "style" not in q1.class_target_sentence(both) + q1.reference_note(both)
    assert q1.reference_note(both).startswith("Not shown: this profile scores pretrained and "
                                              "random-weight models on its own images (coco)")
    def probed():
        return Study.from_sections(tmp_path / "t", models=[vit], dataset=coco,
                                   finetune={"strategies": {"dinov2": ["linear_probe"]}})

    assert probed().class_targets == {"dinov2-tiny-random": None}  # COCO here has no pool
    pooled = probed()
    pooled.__dict__["dataset"] = type("Pooled", (), {"has_pool": True, "label_name": "style"})()
    assert pooled.class_targets == {"dinov2-tiny-random": "its linear probe's style logit"}


def test_conventions_name_the_rules_and_how_far_the_rankings_agree():
    """Three maps ranked a > b > baseline by IoU@90 and the reverse by the mass rule: τ = -1."""
    ones = np.ones(len(IMAGES))
    frames = []
    for model, method, iou, mass in (("a", "attn", 0.5, 0.1), ("b", "cam", 0.3, 0.2),
                                     ("baseline", "centre", 0.1, 0.3)):
        frames += [_rows(model, method, 0, "iou", iou * ones),
                   _rows(model, method, 0, "iou_mass", mass * ones, threshold=60.0)]
    table, taus, sentence = q1.conventions(_scores(frames), 90.0)
    assert table.set_index("model")["mass"].to_dict() == pytest.approx(
        {"a": 0.1, "b": 0.2, "baseline": 0.3})
    assert taus[["rule_a", "rule_b", "n"]].values.tolist() == [["percentile", "mass", 3]]
    assert taus["tau"].iloc[0] == pytest.approx(-1.0)
    assert "*mass*: smallest top set holding 60 % of the mass (DINO)" in sentence
    assert "from -1.00 (percentile vs mass)" in sentence and "n = 3 maps" in sentence
    only = q1.conventions(_scores(frames[::2]), 90.0)
    assert only[2].startswith("Only the percentile rule was scored")
