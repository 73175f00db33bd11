"""Statistics wrappers against pingouin / scipy called directly and against hand cases."""

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from scipy import stats as sps

from sightline import stats


@pytest.fixture
def paired():
    rng = np.random.default_rng(11)
    a = rng.normal(0.3, 0.1, 40)
    return a, a - rng.normal(0.02, 0.05, 40)


def test_bootstrap_ci_equals_a_manual_resampling():
    values = np.array([1.0, 2.0, 3.0, 10.0, np.nan])
    rng = np.random.default_rng(5)
    draws = rng.integers(0, 4, (50, 4))
    means = [values[:4][row].mean() for row in draws]  # one resample at a time
    want = np.quantile(means, [0.025, 0.975])
    got = stats.bootstrap_ci(values, n_boot=50, seed=5)
    assert got == pytest.approx(tuple(want))
    assert stats.bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)
    assert np.isnan(stats.bootstrap_ci([np.nan])).all()


def test_bootstrap_ci_covers_a_planted_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = 0
    for i in range(200):
        low, high = stats.bootstrap_ci(rng.normal(0.3, 1.0, 60), n_boot=1000, seed=i)
        hits += low <= 0.3 <= high
    assert 0.88 <= hits / 200 <= 0.99


def test_paired_comparison_matches_pingouin_and_scipy(paired):
    a, b = paired
    got = stats.paired_comparison(a, b)
    t = pg.ttest(a, b, paired=True).iloc[0]
    w = sps.wilcoxon(a, b)
    assert got["n"] == 40 and got["n_dropped"] == 0
    assert got["t"] == pytest.approx(t["T"]) and got["p_t"] == pytest.approx(t["p_val"])
    assert got["wilcoxon_w"] == pytest.approx(w.statistic)
    assert got["p_wilcoxon"] == pytest.approx(w.pvalue)
    assert got["rbc"] == pytest.approx(pg.wilcoxon(a, b).iloc[0]["RBC"])
    diff = a - b
    assert got["d_z"] == pytest.approx(diff.mean() / diff.std(ddof=1))
    assert got["t"] == pytest.approx(got["d_z"] * np.sqrt(40))
    assert got["mean_diff"] == pytest.approx(got["mean_a"] - got["mean_b"])
    assert got["ci_low"] < got["mean_diff"] < got["ci_high"]


def test_paired_wilcoxon_is_scipys_with_continuity_correction_as_run():
    """n > 50 with ties: the normal approximation, continuity-corrected (pingouin's default)."""
    rng = np.random.default_rng(3)
    a = np.round(rng.normal(0.30, 0.1, 139), 2)  # IoU-like values with ties and zero diffs
    b = np.round(a - rng.normal(0.01, 0.05, 139), 2)
    got = stats.paired_comparison(a, b)["p_wilcoxon"]
    corrected = sps.wilcoxon(a, b, zero_method="wilcox", correction=True).pvalue
    plain = sps.wilcoxon(a, b).pvalue
    assert got == corrected and got != pytest.approx(plain, rel=1e-6)
    d = (a - b)[a != b]  # by hand: drop zeros, rank |d|, tie-corrected normal approximation
    ranks = sps.rankdata(np.abs(d))
    r_plus, n = ranks[d > 0].sum(), d.size
    _, ties = np.unique(np.abs(d), return_counts=True)
    se = np.sqrt(n * (n + 1) * (2 * n + 1) / 24 - (ties**3 - ties).sum() / 48)
    z = r_plus - n * (n + 1) / 4
    z = (abs(z) - 0.5) / se
    assert got == pytest.approx(2 * sps.norm.sf(z), rel=1e-12)


def test_paired_comparison_by_hand_with_nan_pairs_dropped():
    got = stats.paired_comparison([1, 2, 3, 4, np.nan, 7], [0, 0, 0, 0, 1, np.nan])
    assert got["n"] == 4 and got["n_dropped"] == 2
    assert got["mean_diff"] == 2.5 and got["wilcoxon_w"] == 0.0 and got["rbc"] == 1.0
    assert got["p_wilcoxon"] == pytest.approx(0.125)  # exact: 2 of 16 sign patterns
    assert got["d_z"] == pytest.approx(2.5 / np.std([1, 2, 3, 4], ddof=1))
    same = stats.paired_comparison([1.0, 2.0], [1.0, 2.0])
    assert same["n"] == 2 and np.isnan(same["p_wilcoxon"]) and np.isnan(same["p_t"])
    with pytest.raises(ValueError, match="paired"):
        stats.paired_comparison([1, 2], [1, 2, 3])


def test_holm_matches_pingouin_and_a_hand_case():
    assert stats.holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    p = np.array([0.001, 0.2, np.nan, 0.04, 0.03])
    np.testing.assert_allclose(stats.holm(p), pg.multicomp(p, method="holm")[1])
    assert np.isnan(stats.holm(p)[2])
    assert stats.holm([]).size == 0


def _scores(rng, models=("dinov2", "clip", "mae"), images=25, layers=(0, 11)):
    rows = [
        {"image": i, "model": m, "layer": layer, "iou": rng.random() + 0.1 * k}
        for layer in layers
        for k, m in enumerate(models)
        for i in range(images)
    ]
    return pd.DataFrame(rows)


def test_pairwise_comparisons_holm_over_the_pairs():
    df = _scores(np.random.default_rng(2))
    df.loc[0, "iou"] = np.nan
    got = stats.pairwise_comparisons(df[df.layer == 0], "iou", "model", "image")
    assert len(got) == 3 and list(got.columns[:2]) == ["a", "b"]
    first = got.iloc[0]
    assert (first["a"], first["b"]) == ("clip", "dinov2")
    wide = df[df.layer == 0].pivot(index="image", columns="model", values="iou")
    want = stats.paired_comparison(wide["clip"], wide["dinov2"])
    assert first["n"] == want["n"] == 24 and first["p_wilcoxon"] == want["p_wilcoxon"]
    p = got["p_wilcoxon"].sort_values()  # Holm by hand: 3 p_(1), then 2 p_(2), then p_(3)
    holm = np.maximum.accumulate(np.minimum(1, p.to_numpy() * [3, 2, 1]))
    np.testing.assert_allclose(got.loc[p.index, "p_holm"], holm)


def test_pairwise_comparisons_reject_ambiguous_pairs_and_missing_columns():
    df = _scores(np.random.default_rng(2))
    with pytest.raises(ValueError, match=r"\(image, model\) pair must appear once"):
        stats.pairwise_comparisons(df, "iou", "model", "image")
    with pytest.raises(KeyError, match=r"columns \['iuo'\] not in the table"):
        stats.pairwise_comparisons(df, "iuo", "model", "image")


def test_omnibus_friedman_and_kruskal_match_the_libraries():
    df = _scores(np.random.default_rng(3), layers=(0,))
    df.loc[3, "iou"] = np.nan  # drops image 3 from the paired test
    got = stats.omnibus(df, "iou", "model", "image")
    complete = df[df.image != 3]
    want = pg.friedman(data=complete, dv="iou", within="model", subject="image").iloc[0]
    wide = complete.pivot(index="image", columns="model", values="iou")
    assert got["test"] == "friedman" and got["n"] == 24 and got["n_dropped"] == 1
    assert got["statistic"] == pytest.approx(want["Q"]) and got["p"] == pytest.approx(want["p_unc"])
    assert got["statistic"] == pytest.approx(sps.friedmanchisquare(*wide.T.to_numpy()).statistic)
    unpaired = stats.omnibus(df, "iou", "model")
    groups = [g.dropna().to_numpy() for _, g in df.groupby("model")["iou"]]
    h = sps.kruskal(*groups)
    assert unpaired["test"] == "kruskal" and unpaired["n"] == 74 and unpaired["k"] == 3
    assert unpaired["statistic"] == pytest.approx(h.statistic)
    assert unpaired["p"] == pytest.approx(h.pvalue)


def test_anova_tukey_matches_pingouin_and_scipy():
    df = _scores(np.random.default_rng(4), layers=(0,))
    anova, tukey = stats.anova_tukey(df, "iou", "model")
    groups = [g.to_numpy() for _, g in df.groupby("model")["iou"]]
    assert anova.loc[0, "F"] == pytest.approx(sps.f_oneway(*groups).statistic)
    pd.testing.assert_frame_equal(
        tukey.drop(columns="n"), pg.pairwise_tukey(data=df, dv="iou", between="model")
    )
    assert (anova["n"] == 75).all()
    sizes = df["model"].value_counts()  # each pair's n: its two groups' rows
    assert tukey["n"].tolist() == [sizes[a] + sizes[b] for a, b in zip(tukey["A"], tukey["B"],
                                                                        strict=True)]
    assert (tukey["n"] < 75).all()


def test_ttest_ind_is_welch_by_default():
    rng = np.random.default_rng(6)
    a, b = rng.normal(0.19, 0.1, 30), rng.normal(0.145, 0.2, 45)
    got = stats.ttest_ind(a, np.r_[b, np.nan])
    want = pg.ttest(a, b, correction=True).iloc[0]
    assert got["test"] == "welch" and (got["n"], got["n_a"], got["n_b"]) == (75, 30, 45)
    assert got["t"] == pytest.approx(want["T"]) and got["dof"] == pytest.approx(want["dof"])
    assert got["p"] == pytest.approx(want["p_val"])
    student = stats.ttest_ind(a, b, equal_var=True)
    assert student["test"] == "student" and student["dof"] == 73
    assert student["p"] == pytest.approx(sps.ttest_ind(a, b).pvalue)
    # Cohen's d on the pooled sd, signed like t (a - b), by hand and as pingouin has it
    pooled = np.sqrt((29 * a.var(ddof=1) + 44 * b.var(ddof=1)) / 73)
    assert got["cohen_d"] == pytest.approx((a.mean() - b.mean()) / pooled)
    assert got["cohen_d"] == pytest.approx(pg.compute_effsize(a, b, eftype="cohen"))
    assert np.sign(stats.ttest_ind(b, a)["cohen_d"]) == np.sign(stats.ttest_ind(b, a)["t"]) == -1


def test_paired_d_z_is_mean_over_sd_of_the_differences_not_pingouins_paired_d():
    """For a paired t-test the effect size is d_z = mean(diff) / sd(diff), signed as a - b
    (t = d_z * sqrt(n)); pingouin's ``compute_effsize(paired=True, eftype="cohen")`` is a
    different one, d_av (mean difference over the root mean of the two variances), and
    ``pingouin.ttest`` reports its absolute value: not what a paired test's d should be."""
    rng = np.random.default_rng(8)
    a = rng.normal(0.15, 0.1, 40)
    b = a + rng.normal(0.03, 0.05, 40)  # b larger: negative a - b
    got = stats.paired_comparison(a, b)
    diff = a - b
    assert got["d_z"] == pytest.approx(diff.mean() / diff.std(ddof=1)) and got["d_z"] < 0
    assert got["d_z"] == pytest.approx(pg.compute_effsize(a, b, paired=True, eftype="cohen_dz"))
    assert got["t"] == pytest.approx(got["d_z"] * np.sqrt(40))
    d_av = pg.compute_effsize(a, b, paired=True, eftype="cohen")
    assert d_av == pytest.approx(diff.mean() / np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2))
    assert abs(d_av - got["d_z"]) > 0.1
    assert pg.ttest(a, b, paired=True).iloc[0]["cohen_d"] == pytest.approx(abs(d_av))


def test_anova_two_way_matches_hand_worked_balanced_sums_of_squares():
    """Balanced 2 x 3 design, 4 per cell: SS_A, SS_B, SS_AB from cell and marginal means."""
    rng = np.random.default_rng(3)
    a, b = np.repeat(["x", "y"], 12), np.tile(np.repeat(["p", "q", "r"], 4), 2)
    value = rng.normal(size=24) + (a == "y") * 0.8 + (b == "r") * 0.5
    frame = pd.DataFrame({"a": a, "b": b, "v": value})
    grand = value.mean()
    ma = frame.groupby("a")["v"].mean()
    mb = frame.groupby("b")["v"].mean()
    cell = frame.groupby(["a", "b"])["v"].transform("mean")
    ss_a = 12 * ((ma - grand) ** 2).sum()
    ss_b = 8 * ((mb - grand) ** 2).sum()
    ss_within = ((value - cell) ** 2).sum()
    ss_ab = ((cell - grand) ** 2).sum() - ss_a - ss_b
    table = stats.anova_two_way(frame, "v", ["a", "b"]).set_index("Source")
    np.testing.assert_allclose(table.loc[["a", "b", "a * b", "Residual"], "SS"],
                               [ss_a, ss_b, ss_ab, ss_within])
    f_a = (ss_a / 1) / (ss_within / 18)
    assert table.loc["a", "F"] == pytest.approx(f_a)
    assert table.loc["a", "np2"] == pytest.approx(ss_a / (ss_a + ss_within))
    assert table["n"].iloc[0] == 24
    with pytest.raises(ValueError, match="two factors"):
        stats.anova_two_way(frame, "v", ["a"])


def test_paired_shift_finds_a_planted_shift_and_not_a_null_one():
    rng = np.random.default_rng(0)
    before = rng.uniform(0.1, 0.4, 40)
    moved = before[:, None] + 0.05 + rng.normal(0, 0.03, (40, 3))
    found = stats.paired_shift(before, moved, n_boot=2000, seed=1)
    assert found["mean_diff"] == pytest.approx((moved.mean(axis=1) - before).mean())
    assert found["p_wilcoxon"] < 1e-6 and found["p_t"] < 1e-6
    assert found["ci_low"] < 0.05 < found["ci_high"] and found["ci_low"] > 0
    null = stats.paired_shift(before, before[:, None] + rng.normal(0, 0.03, (40, 3)), seed=1)
    assert null["p_wilcoxon"] > 0.05 and null["ci_low"] < 0 < null["ci_high"]


def test_paired_shift_ci_widens_with_seed_spread_and_matches_one_seed_bootstrap():
    rng = np.random.default_rng(1)
    before = rng.uniform(0, 1, 30)
    delta = rng.normal(0.1, 0.05, 30)
    one = stats.paired_shift(before, before + delta, n_boot=4000, seed=2)
    assert (one["ci_low"], one["ci_high"]) == pytest.approx(
        stats.bootstrap_ci(delta, n_boot=4000, seed=2), abs=0.01)
    # same per-image mean shift, but seeds disagree strongly: a wider interval
    spread = before[:, None] + delta[:, None] + np.array([-0.3, 0.0, 0.3])
    wide = stats.paired_shift(before, spread, n_boot=4000, seed=2)
    assert wide["mean_diff"] == pytest.approx(one["mean_diff"])
    assert wide["ci_high"] - wide["ci_low"] > 2 * (one["ci_high"] - one["ci_low"])


def test_equivalence_is_two_one_sided_t_tests_and_the_90_percent_interval():
    rng = np.random.default_rng(3)
    diff = rng.normal(0.002, 0.01, 40)
    got = stats.equivalence(diff, 0.01)
    n, mean, se = diff.size, diff.mean(), diff.std(ddof=1) / np.sqrt(diff.size)
    # by definition: the larger of the one-sided p of H0 mean <= -m and of H0 mean >= m
    lower = sps.t.sf((mean + 0.01) / se, n - 1)
    upper = sps.t.cdf((mean - 0.01) / se, n - 1)
    assert got["p_tost"] == pytest.approx(max(lower, upper))
    low, high = sps.t.interval(0.90, n - 1, loc=mean, scale=se)
    assert (got["ci_tost_low"], got["ci_tost_high"]) == pytest.approx((low, high))
    # p_tost < alpha exactly when the 90 % interval lies inside the margin, at any margin
    for margin in np.linspace(0.001, 0.02, 40):
        test = stats.equivalence(diff, margin)
        inside = -margin < test["ci_tost_low"] and test["ci_tost_high"] < margin
        assert (test["p_tost"] < 0.05) == inside
    assert stats.equivalence(np.zeros(10), 0.01)["p_tost"] == 0.0  # identical maps
    assert stats.equivalence(np.full(10, 0.5), 0.01)["p_tost"] == 1.0
    with pytest.raises(ValueError, match="margin must be positive"):
        stats.equivalence(diff, 0)


def test_verdicts_on_planted_changes():
    """A tiny significant change is not enhanced; a large one with a wide interval is
    inconclusive; a tight interval around 0 is equivalent; a large clear one is enhanced."""
    rng = np.random.default_rng(4)
    cases = {
        "tiny significant": rng.normal(0.003, 0.002, 60),
        "large, wide CI": rng.normal(0.05, 0.3, 12),
        "tight around 0": rng.normal(0.0, 0.005, 60),
        "large clear": rng.normal(0.05, 0.02, 60),
        "large clear worse": rng.normal(-0.05, 0.02, 60),
    }
    delta = [d.mean() for d in cases.values()]
    p = [sps.wilcoxon(d).pvalue for d in cases.values()]
    p_tost = [stats.equivalence(d, 0.01)["p_tost"] for d in cases.values()]
    assert p[0] < 1e-6 and p[1] > 0.05  # the planted cases are what they claim to be
    got = dict(zip(cases, stats.verdicts(delta, p, p_tost, 0.01), strict=True))
    assert got == {"tiny significant": "equivalent", "large, wide CI": "inconclusive",
                   "tight around 0": "equivalent", "large clear": "enhanced",
                   "large clear worse": "degraded"}
    # lower is better (a distance): the same numbers read the other way round
    flipped = stats.verdicts(delta, p, p_tost, 0.01, lower_is_better=True)
    assert list(flipped[3:]) == ["degraded", "enhanced"]
    # significant, above the margin in the point estimate: a NaN p is never significant
    assert stats.verdicts([0.2], [np.nan], [np.nan], 0.01)[0] == "inconclusive"
    # significant and below the margin but too noisy for equivalence: inconclusive
    assert stats.verdicts([0.005], [0.001], [0.2], 0.01)[0] == "inconclusive"


def test_paired_shift_adds_tost_against_the_margin():
    rng = np.random.default_rng(5)
    before = rng.uniform(0, 1, 50)
    after = before[:, None] + rng.normal(0, 0.004, (50, 2))
    got = stats.paired_shift(before, after, margin=0.01)
    assert got["p_tost"] == pytest.approx(
        stats.equivalence(after.mean(axis=1) - before, 0.01)["p_tost"])
    assert got["p_tost"] < 0.05
    assert np.isnan(stats.paired_shift(before, after)["p_tost"])
