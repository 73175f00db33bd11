"""Shared Interest metrics, binarisation and cases against the Shared Interest code's own
unit-test cases and hand-worked arrays."""

import numpy as np
import pytest

from sightline import metrics
from sightline.studies import shared_interest as si


def _published_cases():
    """mitvis/shared-interest test_shared_interest.py: five 250x250 cases."""
    shape = (5, 250, 250)
    truth = np.zeros(shape, int)
    truth[0, 0:100, 0:100] = 1
    truth[1, 100:250, 200:250] = 1
    truth[2, 0:250, 0:250] = 1
    truth[3, 0:1, 0:1] = 1
    truth[4, 50:100, 50:100] = 1
    binary = np.zeros(shape, int)
    binary[0, 50:150, 50:150] = 1
    binary[1, 50:250, 100:250] = 1
    binary[2, 50:100, 50:100] = 1
    binary[3, 100:150, 150:250] = 1
    binary[4, 50:100, 50:100] = 1
    continuous = np.zeros(shape)
    for i, value in enumerate((0.2, 0.5, 0.9, 0.1, 0.6)):
        continuous[i] = binary[i] * value
    return truth, binary, continuous


def test_published_unit_test_cases_pass_through_our_functions():
    truth, binary, continuous = _published_cases()
    scores = metrics.shared_interest_scores(binary, truth)
    np.testing.assert_allclose(scores["iou"], [0.1428571429, 0.25, 0.04, 0.0, 1.0])
    np.testing.assert_allclose(scores["sc"], [0.25, 0.25, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(scores["gtc"], [0.25, 1.0, 0.04, 0.0, 1.0])
    # continuous saliency coverage: the same numbers (and the project's coverage agrees)
    sc = metrics.shared_interest_scores(continuous, truth, scores=("sc",))["sc"]
    np.testing.assert_allclose(sc, [0.25, 0.25, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(metrics.coverage(continuous, truth), sc)
    with pytest.raises(ValueError, match="binary"):
        metrics.shared_interest_scores(continuous, truth)


def test_published_cases_through_the_study_scorer():
    """`shared_interest.score` with binarize_std reproduces them: a two-valued map splits
    at mean + 1 std into exactly its support."""
    truth, binary, continuous = _published_cases()

    class Sample:
        def __init__(self, i):
            self.image_id, self.subject = f"x{i}", "dog"

    table = si.score(
        continuous[:, None].astype(np.float32), truth.astype(np.float32),
        [Sample(i) for i in range(5)], model="m", variant="frozen", method="gradcam", layer=0,
        rule="std", mask_rule="std", mask_threshold=1.0, thresholds=[1.0], resolution=250,
    )
    got = table.pivot(index="image_id", columns="metric", values="value")
    # case 2: the truth covers the whole image, so it has no variation: nothing to find
    assert np.isnan(got.loc["x2", "iou"])
    keep = ["x0", "x1", "x3", "x4"]
    np.testing.assert_allclose(got.loc[keep, "iou"], [0.1428571429, 0.25, 0.0, 1.0])
    np.testing.assert_allclose(got.loc[keep, "gtc"], [0.25, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(got.loc[keep, "sc"], [0.25, 0.25, 0.0, 1.0])
    assert set(table.columns) == set(si.scoring.COLUMNS)


def test_binarize_std_matches_the_reference_rule():
    maps = np.array([[[0.0, 1.0], [2.0, 4.0]], [[3.0, 3.0], [3.0, 3.0]]])
    x = (maps[0] - 0) / 4  # 0, .25, .5, 1: mean .4375, std ~.36975 -> threshold ~.80725
    assert x.mean() + x.std() == pytest.approx(0.80725, abs=1e-5)
    np.testing.assert_array_equal(
        metrics.binarize_std(maps), [[[False, False], [False, True]], [[False] * 2] * 2]
    )
    np.testing.assert_array_equal(metrics.binarize_std(maps[:1], 0.0)[0],
                                  [[False, False], [True, True]])


def test_binarize_percentile_keeps_ties():
    maps = np.array([[[0.0, 0.0, 0.0, 5.0]]])
    np.testing.assert_array_equal(metrics.binarize_percentile(maps, 50)[0], [[True] * 3 + [True]])
    np.testing.assert_array_equal(metrics.binarize_percentile(maps, 80)[0],
                                  [[False] * 3 + [True]])
    with pytest.raises(ValueError, match=r"\[0, 100\)"):
        metrics.binarize_percentile(maps, 100)


def test_cases_by_quadrant_and_correctness():
    iou = np.array([0.6, 0.2, 0.2, 0.05, 0.6, 0.2, 0.2, 0.05, np.nan])
    gtc = np.array([0.7, 0.2, 0.9, 0.1, 0.7, 0.2, 0.9, 0.1, 0.5])
    sc = np.array([0.7, 0.8, 0.2, 0.1, 0.7, 0.8, 0.2, 0.1, 0.5])
    correct = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1], float)
    assert si.cases(iou, gtc, sc, correct).tolist() == [
        "human aligned", "sufficient subset", "sufficient context", "context dependent",
        "confuser", "insufficient subset", "context confusion", "distractor", None,
    ]
    # unknown correctness (a subject with no ImageNet class) reads as the correct names
    assert si.cases([0.1], [0.1], [0.1], [np.nan]).tolist() == ["context dependent"]
