"""Per-head specialisation (Q3): rankings by hand, planted heads found, nulls calibrated."""

import numpy as np
import pandas as pd
import pingouin
import pytest
from matplotlib import pyplot as plt
from scipy import stats

from sightline.studies import heads

FEATURES = ["Apse", "Portal", "Rose Window", "Tower"]
HEAD_PAIRS = [(layer, head) for layer in range(3) for head in range(4)]  # 3 layers x 4 heads
SPECIALIST, GENERALIST = HEAD_PAIRS.index((1, 2)), HEAD_PAIRS.index((0, 1))


def make_scores(seed, *, n_images=12, boxes_per_image=4, signal=None, variant="frozen",
                feature_types=FEATURES):
    """Synthetic scores table: every head scores U(0, 0.3) noise on every region, plus
    ``signal(features) -> (regions, heads)``; head -1 rows hold each layer's mean."""
    rng = np.random.default_rng(seed)
    n_boxes = n_images * boxes_per_image
    features = np.concatenate([["union"] * n_images,
                               rng.permutation(np.resize(feature_types, n_boxes))])
    image_id = np.concatenate([np.arange(n_images), np.repeat(np.arange(n_images),
                                                              boxes_per_image)])
    target = ["union"] * n_images + [f"box{i}" for i in range(boxes_per_image)] * n_images
    values = rng.uniform(0, 0.3, (len(features), len(HEAD_PAIRS)))
    if signal is not None:
        values += signal(features)
    layers, head_ids = np.array(HEAD_PAIRS).T
    layer_means = values.reshape(len(features), 3, 4).mean(axis=2)
    values = np.concatenate([values, layer_means], axis=1)
    layers, head_ids = np.r_[layers, 0, 1, 2], np.r_[head_ids, -1, -1, -1]
    n = values.shape[1]
    table = pd.DataFrame({
        "image_id": np.repeat([f"img{i:03d}" for i in image_id], n),
        "model": "vit", "variant": variant, "method": "cls",
        "layer": np.tile(layers, len(features)), "head": np.tile(head_ids, len(features)),
        "target": np.repeat(target, n), "feature": np.repeat(features, n),
        "metric": "iou", "threshold": 90.0, "value": values.ravel()})
    coverage = table.assign(metric="coverage", threshold=np.nan, value=1 - table["value"])
    return pd.concat([table, coverage], ignore_index=True)


def specialist(features, strength=0.6):
    planted = np.zeros((len(features), len(HEAD_PAIRS)))
    planted[features == "Portal", SPECIALIST] = strength
    return planted


def generalist(features):
    planted = np.zeros((len(features), len(HEAD_PAIRS)))
    planted[:, GENERALIST] = 0.5
    planted[features == "Tower"] += 0.4  # an easy feature type: every head does well on it
    return planted


def test_planted_specialist_is_found_and_significant():
    scores = make_scores(1, signal=specialist)
    best = heads.best_head_per_feature(heads.head_feature_matrix(scores)).set_index("feature")
    assert tuple(best.loc["Portal", ["best_layer", "best_head"]]) == (1, 2)
    assert best.loc["Portal", "advantage"] > 0.4

    test = heads.specialisation_test(scores, n_permutations=999, seed=0).set_index("feature")
    assert tuple(test.loc["Portal", ["layer", "head"]]) == (1, 2)
    assert test.loc["Portal", "p_value"] < 0.01 and test.loc["Portal", "p_holm"] < 0.01
    others = test.drop(index="Portal")
    assert (others["p_holm"] > 0.05).all(), others
    assert set(test["n_boxes"]) == {12}


def test_generalist_ranks_first_but_is_no_specialist():
    scores = make_scores(2, signal=generalist)
    ranking = heads.head_ranking(scores)
    top = ranking.iloc[0]
    assert (top["layer"], top["head"], top["rank"], top["top3_share"]) == (0, 1, 1.0, 1.0)
    assert heads.concentration_test(scores, n_permutations=999)["p_value"].item() < 0.01
    # descriptively the generalist is the best head for every feature type ...
    best = heads.best_head_per_feature(heads.head_feature_matrix(scores))
    assert set(zip(best["best_layer"], best["best_head"], strict=True)) == {(0, 1)}
    # ... but neither it nor the easy feature type makes a significant specialist
    test = heads.specialisation_test(scores, n_permutations=999, seed=0)
    assert (test["p_holm"] > 0.05).all(), test


def test_specialist_beside_a_stronger_generalist_is_still_found():
    scores = make_scores(3, signal=lambda f: generalist(f) + specialist(f, strength=0.3))
    best = heads.best_head_per_feature(heads.head_feature_matrix(scores)).set_index("feature")
    assert tuple(best.loc["Portal", ["best_layer", "best_head"]]) == (0, 1)  # raw best: generalist
    test = heads.specialisation_test(scores, n_permutations=999, seed=0).set_index("feature")
    assert tuple(test.loc["Portal", ["layer", "head"]]) == (1, 2)
    assert test.loc["Portal", "p_holm"] < 0.01


def test_no_structure_gives_calibrated_p_values():
    concentration, specialisation = [], []
    for seed in range(100):
        scores = make_scores(100 + seed, n_images=10)
        concentration += list(heads.concentration_test(scores, n_permutations=99, seed=seed)
                              ["p_value"])
        specialisation += list(heads.specialisation_test(scores, n_permutations=99, seed=seed)
                               ["p_value"])
    for p in (np.array(concentration), np.array(specialisation)):
        assert np.mean(p <= 0.05) <= 0.12
        assert 0.4 < p.mean() < 0.6
        assert 0.35 < np.mean(p <= 0.5) < 0.65
    assert stats.kstest(concentration, "uniform").pvalue > 0.01


def hand_table():
    """3 images x 4 heads (2 layers x 2 heads); image c has no score for head (1, 1)."""
    values = {"a": [0.9, 0.1, 0.5, 0.3], "b": [0.2, 0.8, 0.6, 0.4], "c": [0.7, 0.7, 0.1, np.nan]}
    rows = [dict(image_id=image, layer=layer, head=head, target="union", feature="union",
                 value=value[2 * layer + head])
            for image, value in values.items() for layer in (0, 1) for head in (0, 1)]
    rows += [dict(image_id="a", layer=0, head=-1, target="union", feature="union", value=1.0),
             dict(image_id="a", layer=0, head=0, target="box0", feature="Portal", value=0.0)]
    return pd.DataFrame(rows).assign(model="vit", variant="frozen", method="cls", metric="iou",
                                     threshold=90.0)


def test_head_ranking_by_hand():
    # per-image ranks: a: 1, 4, 2, 3   b: 4, 1, 2, 3   c: 1.5, 1.5, 3, (NaN ignored)
    ranking = heads.head_ranking(hand_table()).set_index(["layer", "head"])
    expected = pd.DataFrame(
        {"mean": [1.8 / 3, 1.6 / 3, 1.2 / 3, 0.35], "median": [0.7, 0.7, 0.5, 0.35],
         "n": [3, 3, 3, 2], "mean_rank": [6.5 / 3, 6.5 / 3, 7 / 3, 3.0],
         "top3_share": [2 / 3, 2 / 3, 1.0, 1.0], "rank": [1.0, 2.0, 3.0, 4.0]},
        index=pd.MultiIndex.from_tuples([(0, 0), (0, 1), (1, 0), (1, 1)], names=["layer", "head"]))
    pd.testing.assert_frame_equal(ranking[expected.columns], expected, check_dtype=False)


def test_concentration_by_hand():
    means = [0.8, 0.4, 0.3, 0.2, 0.1, 0.1, 0.1]
    ranking = pd.DataFrame({"model": "vit", "variant": ["frozen"] * 7 + ["lora"] * 7,
                            "method": "cls", "layer": 0, "head": list(range(7)) * 2,
                            "mean": means + [0.5, 0, 0, 0, 0, 0, 0]})
    out = heads.concentration(ranking).set_index("variant")
    frozen = out.loc["frozen"]
    assert (frozen["best_layer"], frozen["best_head"], frozen["n_heads"]) == (0, 0, 7)
    assert frozen["best_mean"] == pytest.approx(0.8)
    assert frozen["median_mean"] == pytest.approx(0.2)
    assert frozen["ratio"] == pytest.approx(4.0)
    assert frozen["top5_share"] == pytest.approx(1.8 / 2.0)
    assert np.isnan(out.loc["lora", "ratio"])  # zero median: no ratio, no inf
    assert out.loc["lora", "top5_share"] == pytest.approx(1.0)


def test_nan_scores_are_ignored():
    scores = make_scores(4, signal=specialist)
    cropped = (scores["image_id"] == "img000") & (scores["target"] == "box1")
    union_lost = (scores["image_id"] == "img001") & (scores["target"] == "union")
    one_cell = (scores["image_id"] == "img002") & (scores["target"] == "box0") & (
        scores["layer"] == 2) & (scores["head"] == 3)
    with_nan = scores.assign(value=scores["value"].mask(cropped | union_lost | one_cell))
    dropped = with_nan.dropna(subset=["value"])

    for function in (heads.head_ranking, heads.head_feature_matrix, heads.heads_table):
        result = function(with_nan)
        assert result["mean" if "mean" in result else "value"].notna().all()
        pd.testing.assert_frame_equal(result, function(dropped))
    ranking = heads.head_ranking(with_nan)
    assert set(ranking["n"]) == {11}  # image 1's union lost for every head
    pd.testing.assert_frame_equal(heads.specialisation_test(with_nan, n_permutations=99),
                                  heads.specialisation_test(dropped, n_permutations=99))

    matrix = heads.head_feature_matrix(with_nan, min_boxes=12).set_index(["feature", *heads.HEAD])
    cropped_feature = scores.loc[cropped, "feature"].iloc[0]
    assert cropped_feature not in matrix.index  # 11 scored boxes left: below min_boxes
    one_cell_feature = scores.loc[one_cell, "feature"].iloc[0]
    assert matrix.loc[(one_cell_feature, 2, 3), "n_boxes"] == 11
    assert (matrix["n_boxes"].drop(index=(one_cell_feature, 2, 3)) == 12).all()


def test_heads_table_is_tidy_and_keeps_variants(tmp_path):
    scores = pd.concat([make_scores(5, signal=specialist),
                        make_scores(6, variant="lora")], ignore_index=True)
    table = heads.heads_table(scores, metric="coverage", threshold=None)
    assert list(table.columns) == ["model", "variant", "method", "feature", "layer", "head",
                                   "metric", "threshold", "value", "median", "n", "mean_rank",
                                   "top3_share", "rank"]
    assert set(table["variant"]) == {"frozen", "lora"}
    assert set(table["feature"]) == {"union", *FEATURES}
    assert table["threshold"].isna().all() and (table["metric"] == "coverage").all()
    assert len(table) == 2 * 5 * (12 + 3)  # variants x regions x (heads + layer means)
    reference = table[table["head"] == -1]
    assert reference["rank"].isna().all() and reference["value"].notna().all()
    assert table.loc[table["head"] >= 0, "rank"].notna().all()
    table.to_parquet(tmp_path / "heads.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "heads.parquet"), table)


def test_bad_inputs_name_the_problem():
    scores = make_scores(7)
    with pytest.raises(ValueError, match="coverage"):
        heads.head_ranking(scores, metric="gtc")
    with pytest.raises(ValueError, match=r"lacks columns \['feature'\]"):
        heads.head_ranking(scores.drop(columns="feature"))
    with pytest.raises(ValueError, match="more than one row"):
        heads.head_ranking(pd.concat([scores, scores.head(1)]))
    assert len(heads.select(scores, metric="coverage")) == len(scores) // 2


def test_a_planted_specialist_passes_holm_only_with_enough_permutations():
    """12 feature types, as the demo tests: with 200 permutations Holm's smallest p is
    12 / 201 > 0.05 whatever the data; at `min_permutations` and above a true specialist
    passes, and the other feature types do not."""
    def type5_specialist(features):
        return np.where((features == "type5")[:, None]
                        & (np.arange(len(HEAD_PAIRS)) == SPECIALIST), 0.6, 0.0)

    scores = make_scores(3, n_images=36, boxes_per_image=4, signal=type5_specialist,
                         feature_types=[f"type{i}" for i in range(12)])
    assert heads.min_permutations(12, 0.05) == 240
    few = heads.specialisation_test(scores, n_permutations=200, seed=0).set_index("feature")
    assert len(few) == 12 and few["p_value"].min() == pytest.approx(1 / 201)
    assert few["p_holm"].min() == pytest.approx(12 / 201) and (few["p_holm"] > 0.05).all()
    for n in (heads.min_permutations(12, 0.05), 999):
        enough = heads.specialisation_test(scores, n_permutations=n, seed=0).set_index("feature")
        assert enough.loc["type5", "p_holm"] < 0.05
        assert tuple(enough.loc["type5", ["layer", "head"]]) == (1, 2)
        assert (enough.drop(index="type5")["p_holm"] > 0.05).all()


def test_concentration_test_holm_over_its_rows():
    scores = pd.concat([make_scores(2, signal=generalist),
                        make_scores(4, variant="lora.s0")], ignore_index=True)
    test = heads.concentration_test(scores, n_permutations=999)
    assert np.allclose(test["p_holm"], pingouin.multicomp(test["p_value"].to_numpy(),
                                                          method="holm")[1])
    assert test.set_index("variant").loc["frozen", "p_holm"] < 0.01


def test_too_few_boxes_skips_the_feature_part_and_says_why():
    """Issue 24: no feature type reaches `heads.min_boxes` (12 boxes each here): the feature
    part is empty with its columns, one line names the key and the largest count, and the
    rest of Q3 still runs (it used to crash in the cross-fit: argmax of an empty sequence)."""
    scores = make_scores(8, signal=specialist)
    features = heads.feature_heads(scores, percentile=90, min_boxes=13, n_permutations=20, seed=0)
    ran = heads.feature_heads(scores, percentile=90, min_boxes=12, n_permutations=20, seed=0)
    assert features.best.empty and features.matrix.empty and features.tests() == 0
    assert list(features.best.columns) == list(ran.best.columns)
    assert features.skipped == (
        "Heads × feature types skipped: no feature type has `heads.min_boxes` = 13 scored boxes "
        "(the most any has is 12); lower `heads.min_boxes` to include the types there are.")
    assert ran.skipped is None and ran.tests() == 4 and len(ran.best) == 4
    table = heads.tidy_table(scores, percentile=90, min_boxes=13)
    assert set(table["feature"]) == {"union"}


def test_a_table_without_heads_gives_empty_results_and_no_figures():
    empty = make_scores(9).iloc[:0]
    assert heads.summary(empty).startswith("No model has per-head maps (`cls` or `probe`")
    ranking = heads.head_ranking(empty)
    table = heads.concentration_table(empty, ranking, percentile=90, n_permutations=20, seed=0)
    assert ranking.empty and table.empty and "best_cross_fit" in table
    assert heads.feature_heads(empty, percentile=90, min_boxes=3, n_permutations=20,
                               seed=0).skipped.endswith("(the most any has is 0); lower "
                                                        "`heads.min_boxes` to include the types "
                                                        "there are.")
    assert heads.ranking_heatmaps(ranking, 90) is None
    picks = heads.gallery_picks(empty, table, percentile=90, size=2)
    assert picks.empty and heads.best_head_gallery(picks, samples=[], stores={},
                                                   geometries={}) is None


def test_heatmaps_label_layer_and_head_with_integer_ticks():
    scores = make_scores(10, signal=specialist)
    fig = heads.ranking_heatmaps(heads.head_ranking(scores), 90)
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("head", "layer")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2", "3"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2"]
    matrix = heads.feature_heads(scores, percentile=90, min_boxes=3, n_permutations=20,
                                 seed=0).matrix
    (figure,) = heads.feature_heatmaps(matrix, 90, most=5)
    ax = figure.axes[0]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ax.get_xlabel() == "layer-head" and len(ticks) == 5 and "1-2" in ticks  # the specialist
    assert all(a.isdigit() and b.isdigit() for a, b in (t.split("-") for t in ticks))
    assert [t.get_text() for t in ax.get_yticklabels()] == FEATURES
    plt.close("all")


def test_resolution_note_by_hand():
    assert heads.resolution_note(12, "(one per row)", n_permutations=200, alpha=0.05) == (
        "12 tests (one per row), 200 permutations: the smallest possible Holm p is 12 / 201 = "
        "0.0597 against α = 0.05, so **no effect can pass**: use at least 240.")
    assert heads.resolution_note(2, "x", n_permutations=99, alpha=0.05).endswith(
        "2 / 100 = 0.02 against α = 0.05, so a strong enough effect can pass.")


def test_concentration_table_cross_fits_a_planted_best_head():
    """A generalist far above the rest is chosen on every half: the cross-fitted mean is its
    mean over the images, and its stability is 1."""
    scores = make_scores(11, signal=generalist)
    ranking = heads.head_ranking(scores)
    table = heads.concentration_table(scores, ranking, percentile=90, n_permutations=99, seed=0)
    row = table.iloc[0]
    assert (row["best_layer"], row["best_head"], row["head_stability"]) == (0, 1, 1.0)
    assert row["best_cross_fit"] == pytest.approx(row["best_mean"])
    assert row["p_value"] == pytest.approx(0.01) and row["n_heads"] == 12
    view = heads.concentration_view(table)
    assert view.caption is None


def test_random_weight_note_counts_rejections_of_untrained_models():
    table = pd.DataFrame({"model": ["a", "b", "c"], "p_holm": [0.01, 0.2, 0.001]})
    note = heads.random_weight_note(table, ["a", "b", "z"], 0.05)
    assert note.startswith("1 of 2 random-weight model(s) reject exchangeable heads (Holm p < 0.05)")
    assert heads.random_weight_note(table, [], 0.05) is None
    assert heads.random_weight_note(table.iloc[:0], ["a"], 0.05) is None


def test_gallery_picks_the_best_heads_wins_and_fails_by_hand():
    # the hand table's best head is (0, 0): a 0.9, c 0.7, b 0.2
    scores = hand_table()
    table = heads.concentration(heads.head_ranking(scores))
    picks = heads.gallery_picks(scores, table, percentile=90, size=1)
    assert picks[["layer", "head", "outcome", "image_id", "value"]].values.tolist() == [
        [0, 0, "wins", "a", 0.9], [0, 0, "fails", "b", 0.2]]


def test_concentration_view_blanks_top5_share_of_a_model_with_five_heads_or_fewer():
    scores = hand_table()  # 4 heads: the top 5 are all of them
    table = heads.concentration_table(scores, heads.head_ranking(scores), percentile=90,
                                      n_permutations=20, seed=0)
    view = heads.concentration_view(table)
    assert view.caption.startswith("top5_share: – for a model with 5 heads or fewer (vit)")
    assert view.text["top5_share"].tolist() == ["–"]
