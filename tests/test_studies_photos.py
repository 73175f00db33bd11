"""The real-photo study's analyses (`sightline.studies.photos`) on planted inputs whose tables
and sentences are worked out by hand: no model runs here."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from scipy.stats import wilcoxon

from sightline import config
from sightline.studies import Study
from sightline.studies import photos as ph
from sightline.studies.photo_album import Photo, PhotoReport, Region


def _photo(file: str, *regions: tuple[str, tuple[int, ...], np.ndarray]) -> Photo:
    """A 4 x 4 photo with (category, ImageNet ids, mask) regions."""
    return Photo(file, Path(file), 4, 4, tuple(Region(c, ids, (0, 0, 1, 1), m)
                                              for c, ids, m in regions))


LEFT = np.zeros((4, 4), bool)
LEFT[:, :2] = True
CAT = ("cat", (281, 285), LEFT)
DOG = ("dog", (151,), ~LEFT)


def test_predictions_rank_the_top_five_and_find_the_top_one_box():
    album = [_photo("a.jpg", CAT), _photo("b.jpg", CAT, DOG)]
    probs = np.zeros((2, 1000))
    probs[0, [285, 1, 2, 3, 4, 5]] = [0.5, 0.2, 0.1, 0.08, 0.07, 0.01]  # an Egyptian cat
    probs[1, [417, 151, 2, 3, 4]] = [0.4, 0.3, 0.1, 0.05, 0.04]  # a balloon, then a dog
    table = ph.predictions(album, probs)
    assert list(table["class"]) == [285, 1, 2, 3, 4, 417, 151, 2, 3, 4]
    assert list(table["rank"]) == [1, 2, 3, 4, 5] * 2
    assert table["name"].iloc[0] == "Egyptian cat" and table["name"].iloc[6] == "Chihuahua"
    assert table["probability"].iloc[5] == pytest.approx(0.4)
    # only the top-1 class has a box, and b's balloon is none of its objects
    assert table["box"].iloc[0] == "cat" and table["box"].iloc[1:].isna().all()
    view = ph.predictions_view(table)
    assert view.loc["a.jpg", "top-1"] == "Egyptian cat (285) 0.50"
    assert view["box"].tolist() == ["cat", "—"]
    assert view.loc["b.jpg", "top-2..5"] == ("Chihuahua 0.30, great white shark 0.10, "
                                             "tiger shark 0.05, hammerhead 0.04")
    assert ph.predictions_sentence(table) == (
        "The top-1 class names an annotated object on **1 of 2** photos. No box for the top-1 "
        "class: `b.jpg` (balloon). Those photos are left out of the scores below (there is no "
        "predicted object to find).")


def test_the_study_sentence_counts_photos_annotations_objects_and_missing_sources():
    album = [_photo("a.jpg", CAT, ("eye", (), LEFT)), _photo("b.jpg", CAT, DOG)]
    study = ph.PhotoStudy(config.Photos(), 0, PhotoReport(["a.jpg", "b.jpg"], ["x.jpg: gone"]),
                          album, None, None)
    assert study.sentence() == ("2 photographs, 4 annotations (3 objects of an ImageNet class). "
                                "Not used on this machine:\n- x.jpg: gone")
    study.found = PhotoReport(["a.jpg", "b.jpg"], [])
    assert study.sentence().endswith("class). Every source was found.")


def test_a_profile_without_photos_is_said():
    study = Study(config.Params.model_construct(profile="x", photos=None), Path("tables"))
    with pytest.raises(ValueError, match="profile 'x' has no 'photos' section"):
        ph.PhotoStudy.open(study)


def test_scores_keep_photos_with_a_box_and_say_which_predictions_are_right():
    album = [_photo("a.jpg", CAT), _photo("b.jpg", DOG)]
    top = pd.DataFrame({"class": [285, 999], "box": ["cat", None]}, index=["a.jpg", "b.jpg"])
    on_object = np.stack([LEFT, LEFT]).astype(float)  # all of a's mass on its cat
    off_object = 1 - on_object
    probs = np.zeros((2, 1000))
    probs[:, 285] = 1
    table = ph.score_table(album, top, {"pretrained": {"gradcam": on_object},
                                        "centre baseline": {"-": off_object}},
                           {"pretrained": probs}, percentile=50, resolution=4)
    assert list(table.columns) == ["photo", "object", "source", "method", "iou@50", "coverage",
                                   "pointing", "object_area", "correct"]
    assert table[["photo", "object", "source", "method"]].values.tolist() == [
        ["a.jpg", "cat", "pretrained", "gradcam"], ["a.jpg", "cat", "centre baseline", "-"]]
    assert table["iou@50"].tolist() == [1, 0] and table["coverage"].tolist() == [1, 0]
    assert table["pointing"].tolist() == [1, 0] and table["object_area"].tolist() == [0.5, 0.5]
    assert table["correct"].iloc[0] and pd.isna(table["correct"].iloc[1])


def _scores() -> pd.DataFrame:
    """Two photos per (source, method), coverage and pointing chosen for round means."""
    rows = [("pretrained", "gradcam", [0.4, 0.6], [1, 1]), ("pretrained", "xrai", [0.2, 0.3], [1, 0]),
            ("random weights", "gradcam", [0.1, 0.1], [0, 0]),
            ("centre baseline", "-", [0.3, 0.5], [1, 0])]
    return pd.DataFrame([{"photo": p, "object": "cat", "source": s, "method": m, "iou@90": c[k] / 2,
                          "coverage": c[k], "pointing": bool(hit[k]), "object_area": area}
                         for s, m, c, hit in rows
                         for k, (p, area) in enumerate([("a.jpg", 0.2), ("b.jpg", 0.4)])])


def test_summary_and_its_sentence():
    scores = _scores()
    summary = ph.summary(scores)
    assert summary.loc[("pretrained", "xrai")].tolist() == [0.125, 0.25, 0.5, 2]
    assert summary.loc[("centre baseline", "-"), "coverage"] == 0.4
    assert ph.scores_sentence(summary, scores) == (
        "Over the 2 photos whose top-1 class has a box (the box covers 30% of the frame on "
        "average), the real weights put **50%** of gradcam's mass and **25%** of xrai's mass "
        "inside the predicted object; with random weights 10% (gradcam); the centre baseline "
        "40%. Pointing game (maximum inside the box): pretrained gradcam 100%, pretrained xrai "
        "50%, random weights gradcam 0%, centre baseline 50%.")


def test_versus_centre_is_the_paired_difference_per_photo():
    rng = np.random.default_rng(0)
    centre = rng.uniform(0, 0.5, 9)
    gain = np.array([0.3, 0.25, 0.2, 0.22, 0.18, -0.05, 0.35, 0.28, 0.31])
    photos = [f"{k}.jpg" for k in range(9)]
    scores = pd.concat([pd.DataFrame({"photo": photos, "source": s, "method": m, "iou@90": v / 2,
                                      "coverage": v})
                        for s, m, v in [("centre baseline", "-", centre),
                                        ("pretrained", "gradcam", centre + gain)]])
    versus = ph.versus_centre(scores.sample(frac=1, random_state=1), seed=0)  # any row order
    assert versus[["source", "method", "metric"]].values.tolist() == [
        ["pretrained", "gradcam", "iou@90"], ["pretrained", "gradcam", "coverage"]]
    coverage = versus.iloc[1]
    assert coverage["n"] == 9 and coverage["delta"] == pytest.approx(gain.mean())
    assert coverage["map"] == pytest.approx((centre + gain).mean())
    assert coverage["p_wilcoxon"] == pytest.approx(wilcoxon(centre + gain, centre).pvalue)
    assert coverage["ci_low"] < coverage["delta"] < coverage["ci_high"]
    assert versus.iloc[0]["delta"] == pytest.approx(gain.mean() / 2)


def test_versus_sentence_names_what_beats_the_centre_and_what_does_not():
    versus = pd.DataFrame(
        [("pretrained", "gradcam", "iou@90", 0.1, 0.05, 0.15, 0.01),
         ("pretrained", "gradcam", "coverage", -0.02, -0.1, 0.05, 0.5),
         ("pretrained", "xrai", "coverage", 0.04, -0.01, 0.09, 0.03),  # p < 0.05, CI not above 0
         ("random weights", "gradcam", "coverage", 0.2, 0.1, 0.3, 0.001)],
        columns=["source", "method", "metric", "delta", "ci_low", "ci_high", "p_wilcoxon"])
    assert ph.versus_sentence(versus, photos=10) == (
        "On these 10 photos, the real weights beat the centre baseline (Wilcoxon p < 0.05, 95 % "
        "CI above 0) for gradcam iou@90 (Δ +0.100 [+0.050, +0.150]), not for gradcam coverage "
        "(Δ -0.020), xrai coverage (Δ +0.040).")
    assert ph.versus_sentence(versus.iloc[[0]], photos=10).endswith("(Δ +0.100 [+0.050, +0.150]).")
    assert ph.versus_sentence(versus.iloc[1:], photos=10) == (
        "On these 10 photos, no map of the real weights beats the centre baseline (Wilcoxon "
        "p < 0.05 with a 95 % CI above 0) on IoU or coverage; no equivalence was tested, so "
        "this says only that no difference was shown.")


def _grid() -> pd.DataFrame:
    return pd.DataFrame({"composite": 0, "source": ["pretrained"] * 4 + ["random weights"] * 2,
                         "method": "gradcam", "photo": list("abcdab"),
                         "name": list("ABCDAB"), "chance": 0.25,
                         "mass_in_cell": [0.83, 0.93, 0.85, 0.87, 0.1, 0.3]})


def _contrast() -> pd.DataFrame:
    return pd.DataFrame({
        "photo": ["dog.jpg", "dog.jpg", "horses.jpg"] * 2,
        "source": ["pretrained"] * 3 + ["random weights"] * 3, "method": "gradcam",
        "a_mass_in_a": [0.6, 0.3, 0.5, 0.1, 0.1, 0.1], "b_mass_in_a": [0.2, 0.4, 0.1, 0.2, 0.2, 0.2],
        "b_mass_in_b": [0.5, 0.7, 0.5, 0.1, 0.1, 0.1], "a_mass_in_b": [0.1, 0.2, 0.3, 0.2, 0.2, 0.2],
        "discriminative": [True, False, True, False, False, True]})


def test_discriminative_summarises_cells_and_pairs():
    table = ph.discriminative(_grid(), _contrast())
    expected = pd.DataFrame({
        "test": ["grid pointing game (other = chance)"] * 2 + ["objects A vs B"] * 2,
        "source": ["pretrained", "random weights"] * 2, "method": "gradcam",
        "tests": [4, 2, 3, 3],
        # pairs: own = mean of A-in-A and B-in-B, other = mean of B-in-A and A-in-B
        "own_region_mass": [0.87, 0.2, (0.55 + 0.5 + 0.5) / 3, 0.1],
        "min_own_region_mass": [0.83, 0.1, 0.3, 0.1],
        "other_class_mass": [0.25, 0.25, (0.15 + 0.3 + 0.2) / 3, 0.2],
        "passed": [1, 0.5, 2 / 3, 1 / 3]})
    assert_frame_equal(table, expected, check_dtype=False)
    assert list(ph.discriminative(_grid(), pd.DataFrame())["test"].unique()) == [
        "grid pointing game (other = chance)"]
    assert ph.discriminative(pd.DataFrame(), pd.DataFrame()).empty


def test_grid_and_contrast_sentences():
    assert ph.grid_sentence(_grid(), rotate=False) == (
        "Grid pointing game, real weights — gradcam: 83%–93% of each class's mass in its own "
        "cell (4 cells, mean 87%). Random weights (Grad-CAM): mean 20%; chance 25 %. 1 "
        "composite(s), one arrangement (`rotate` off: each photo stays in one cell, so a "
        "position effect is not separated from the class).")
    assert ph.grid_sentence(_grid(), rotate=True).endswith(
        "1 composite(s), each photo once in every cell (`rotate`).")
    per_photo = ph.grid_per_photo(_grid())
    assert per_photo.loc[("gradcam", "b", "B")].tolist() == [0.93, 0.93] and len(per_photo) == 4
    assert ph.contrast_sentence(_contrast()) == (
        "Objects A vs B, real weights (gradcam): 2 of 3 pairs (from 2 photos; 2 of them from "
        "dog.jpg, so not independent) are class-discriminative both ways — each class's map "
        "holds more of its own object than the other class's map does, by 1% of its mass or "
        "more (closer is a tie; no test); random weights: 1 of 3.")


def _randomisation() -> ph.Randomisation:
    steps = pd.DataFrame({"mode": ["original", "cascade", "cascade", "independent"],
                          "depth": [0, 2, 1, 1], "unit": ["original", "stem", "head", "head"],
                          "extracted": [0, 3, 0, 0]})
    summary = pd.DataFrame({
        "mode": ["cascade"] * 5 + ["independent"], "depth": [1, 1, 1, 2, 2, 1],
        "method": ["gradcam", "xrai", "gradcam", "gradcam", "xrai", "gradcam"],
        "metric": ["spearman", "spearman", "ssim", "spearman", "spearman", "spearman"],
        "mean": [0.31, 0.7, 0.9, 0.2, 0.6, 0.05]})
    flags = pd.DataFrame({"model": "m", "method": ["gradcam", "xrai"], "metric": "spearman",
                          "mean": [0.2, 0.6], "ci_low": [0.1, 0.5], "ci_high": [0.3, 0.7],
                          "n": 2, "not_model_sensitive": [False, True]})
    check = config.PhotosSanity(threshold=0.5)
    return ph.Randomisation(check, ["a.jpg", "b.jpg"], summary, flags, steps, [1, 2, 2])


def test_randomisation_sentences_and_verdicts():
    result = _randomisation()
    assert result.sentence() == (
        "2 photos (a.jpg, b.jpg), methods gradcam, xrai, seed 0; stages of 1, 2, 2 blocks "
        "(`b0` ... `b2`). Cascade steps, each re-initialising from the head down to the unit "
        "named (the last: the whole network): head → stem; 1 of 4 map sets (the real model's "
        "and each step's) extracted in this run (the others from the cache). With 2 photos the "
        "intervals are wide: the verdicts are indicative.")
    assert result.verdicts()["verdict"].tolist() == ["passes: model-sensitive",
                                                     "fails: not model-sensitive"]
    assert len(result.cascade) == 5
    assert result.verdict_sentence() == (
        "**gradcam**: mean Spearman 0.20 (95 % CI 0.10 to 0.30, 2 photos) with the real model's "
        "map once the whole network is re-initialised, 0.31 after the head alone: it **passes** "
        "(at most 0.5: the map changes with the weights). **xrai**: mean Spearman 0.60 (95 % CI "
        "0.50 to 0.70, 2 photos) with the real model's map once the whole network is "
        "re-initialised, 0.70 after the head alone: it **fails** the check (above 0.5: the map "
        "stays close to what the real weights give, so it is not model-sensitive).")
