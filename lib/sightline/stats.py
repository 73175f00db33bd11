"""Tests, effect sizes and bootstrap intervals: thin, well-named wrappers over pingouin / scipy.

Every result carries ``n``, the number of observations (or pairs, or subjects) it used;
pairs or rows with a NaN are dropped first and counted in ``n_dropped``.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pingouin as pg
from scipy import stats as sps

# pingouin 0.6 calls DataFrame.dropna(inplace=True), deprecated in pandas 3.1: nothing a
# user can act on, and the results are unaffected.
warnings.filterwarnings("ignore", message="The inplace keyword in DataFrame.dropna",
                        module="pingouin")

PAIRED_FIELDS = ("mean_a", "mean_b", "mean_diff", "ci_low", "ci_high", "wilcoxon_w", "p_wilcoxon",
                 "rbc", "t", "p_t", "d_z")


def _vector(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    return array


def bootstrap_ci(values: Sequence[float] | np.ndarray, *, n_boot: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of the mean; NaNs dropped. All resamples are drawn at
    once: ``n_boot x n`` indices from ``default_rng(seed)``."""
    data = _vector(values, "values")
    data = data[~np.isnan(data)]
    if data.size == 0:
        return (np.nan, np.nan)
    resamples = np.random.default_rng(seed).integers(0, data.size, (n_boot, data.size))
    tail = (1 - 0.95) / 2  # as computed, not the literal 0.025: the tables keep their last digits
    low, high = np.quantile(data[resamples].mean(axis=1), [tail, 1 - tail])
    return float(low), float(high)


def paired_comparison(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *,
                      n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """Compare two paired samples (e.g. two models on the same images), ``a - b``.
    Wilcoxon signed-rank via ``pingouin.wilcoxon`` (with the rank-biserial ``rbc``), i.e.
    ``scipy.stats.wilcoxon(zero_method="wilcox", correction=True, method="auto")``: its normal
    approximation (n > 50) carries a continuity correction plain scipy does not, so p is
    slightly larger (about the 4th digit). Also the paired t-test, Cohen's ``d_z`` = mean / sd
    of the differences and a bootstrap CI of the mean difference; no non-zero difference: NaN."""
    x, y = _vector(a, "a"), _vector(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must be paired (same length), got {x.size} and {y.size}")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    diff = x - y
    n = diff.size
    sd = diff.std(ddof=1) if n > 1 else np.nan
    result = dict.fromkeys(["t", "p_t", "wilcoxon_w", "p_wilcoxon", "rbc", "d_z"], np.nan)
    if n:
        result.update(mean_a=x.mean(), mean_b=y.mean(), mean_diff=diff.mean())
    if n > 1 and sd > 0:
        t_test = sps.ttest_rel(x, y)
        result.update(t=t_test.statistic, p_t=t_test.pvalue, d_z=diff.mean() / sd)
    if np.any(diff != 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # scipy's normal approx. notes
            w = pg.wilcoxon(x, y).iloc[0]
        result.update(wilcoxon_w=w["W_val"], p_wilcoxon=w["p_val"], rbc=w["RBC"])
    result["ci_low"], result["ci_high"] = bootstrap_ci(diff, n_boot=n_boot, seed=seed)
    floats = {key: float(result.get(key, np.nan)) for key in PAIRED_FIELDS}
    return {"n": int(n), "n_dropped": int((~keep).sum()), **floats}


def equivalence(differences: Sequence[float] | np.ndarray, margin: float, *,
                alpha: float = 0.05) -> dict[str, float]:
    """Two one-sided tests (TOST, ``pingouin.tost``) that the mean difference lies inside
    ``±margin``; ``p_tost < alpha`` exactly when the ``1 - 2 alpha`` (90 %) t-interval of
    the mean lies inside ``±margin``, which is returned too (``ci_tost_low`` / ``_high``).
    Differences that are all equal (sd 0, e.g. bit-identical maps) are known exactly: the
    interval is that value, p 0 inside the margin and 1 outside. NaNs are dropped."""
    if not margin > 0:
        raise ValueError(f"the equivalence margin must be positive, got {margin}")
    diff = _vector(differences, "differences")
    diff = diff[~np.isnan(diff)]
    n = diff.size
    out = {"n": n, "p_tost": np.nan, "ci_tost_low": np.nan, "ci_tost_high": np.nan}
    if n < 2:
        return out
    mean, sd = diff.mean(), diff.std(ddof=1)
    if sd == 0:
        return {**out, "p_tost": float(abs(mean) >= margin), "ci_tost_low": float(mean),
                "ci_tost_high": float(mean)}
    half = sps.t.ppf(1 - alpha, n - 1) * sd / np.sqrt(n)
    p = pg.tost(diff, 0, bound=float(margin)).at["TOST", "pval"]
    return {**out, "p_tost": float(p), "ci_tost_low": float(mean - half),
            "ci_tost_high": float(mean + half)}


VERDICTS = ("enhanced", "degraded", "equivalent", "inconclusive")


def verdicts(delta: Sequence[float] | np.ndarray, p_reject: Sequence[float] | np.ndarray,
             p_tost: Sequence[float] | np.ndarray, margin: float | Sequence[float] | np.ndarray, *,
             alpha: float = 0.05, lower_is_better: bool | Sequence[bool] | np.ndarray = False
             ) -> np.ndarray:
    """The three-way reading of a change against its smallest effect size of interest:
    **enhanced** / **degraded**: the (adjusted) test rejects no change (``p_reject <
    alpha``) *and* ``|delta|`` reaches ``margin``, in the better / worse direction;
    **equivalent**: the TOST shows the change lies inside ``±margin`` (``p_tost < alpha``);
    **inconclusive**: neither (too noisy to tell, or significant but below the margin with
    an interval still reaching past it). NaN p-values count as not significant."""
    d = _vector(delta, "delta")
    better = np.where(np.broadcast_to(lower_is_better, d.shape), -d, d)
    with np.errstate(invalid="ignore"):
        moved = (np.asarray(p_reject, dtype=np.float64) < alpha) & (
            np.abs(d) >= np.asarray(margin, dtype=np.float64))
        same = np.asarray(p_tost, dtype=np.float64) < alpha
    return np.where(moved & (better > 0), "enhanced",
                    np.where(moved & (better < 0), "degraded",
                             np.where(same, "equivalent", "inconclusive")))


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (``pingouin.multicomp``); NaNs stay NaN, uncounted."""
    p = _vector(pvalues, "pvalues")
    return np.asarray(pg.multicomp(p, method="holm")[1], dtype=np.float64) if p.size else p


def _require_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the table; it has {list(df.columns)}")


def _wide(df: pd.DataFrame, value: str, group: str, subject: str) -> pd.DataFrame:
    """Subjects x groups table of ``value``; each (subject, group) must appear once."""
    repeated = df.duplicated([subject, group])
    if repeated.any():
        row = df.loc[repeated, [subject, group]].iloc[0].to_dict()
        raise ValueError(f"each ({subject}, {group}) pair must appear once to pair the groups, but "
                         f"{row} repeats; aggregate first or test one subset at a time")
    return df.pivot(index=subject, columns=group, values=value)


def pairwise_comparisons(df: pd.DataFrame, value: str, group: str, subject: str, *,
                         n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """``paired_comparison`` of every pair of groups on their shared subjects: one row per pair
    (``a`` < ``b`` in sorted order); ``p_holm``: the Wilcoxon p Holm-adjusted over the pairs."""
    _require_columns(df, [value, group, subject])
    wide = _wide(df, value, group, subject)
    found = [{"a": a, "b": b, **paired_comparison(wide[a], wide[b], n_boot=n_boot, seed=seed)}
             for a, b in itertools.combinations(sorted(wide.columns), 2)]
    p_holm = holm([row["p_wilcoxon"] for row in found])
    return pd.DataFrame([{**row, "p_holm": p} for row, p in zip(found, p_holm, strict=True)])


def omnibus(df: pd.DataFrame, value: str, group: str, subject: str | None = None
            ) -> dict[str, float | str]:
    """Do the groups differ at all? Friedman if paired by ``subject`` (complete subjects
    only; ``pingouin.friedman``, with Kendall's W), else Kruskal-Wallis (``scipy``)."""
    _require_columns(df, [value, group] + ([subject] if subject else []))
    if subject is None:
        data = df[[group, value]].dropna()
        groups = [g[value].to_numpy() for _, g in data.groupby(group, observed=True)]
        h = sps.kruskal(*groups)
        return {"test": "kruskal", "n": len(data), "n_dropped": len(df) - len(data),
                "k": len(groups), "statistic": float(h.statistic), "p": float(h.pvalue)}
    wide = _wide(df, value, group, subject)
    complete = wide.dropna()
    long = complete.reset_index().melt(id_vars=subject, var_name=group, value_name=value)
    result = pg.friedman(data=long, dv=value, within=group, subject=subject).iloc[0]
    return {"test": "friedman", "n": len(complete), "n_dropped": len(wide) - len(complete),
            "k": wide.shape[1], "statistic": float(result["Q"]), "p": float(result["p_unc"]),
            "kendall_w": float(result["W"])}


def anova_tukey(df: pd.DataFrame, value: str, group: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One-way between-groups ANOVA and Tukey HSD (``pingouin.anova`` / ``pairwise_tukey``);
    both tables gain ``n``, the rows used (NaNs dropped): all of them for the ANOVA, the two
    groups' for each Tukey pair (its test still uses the pooled variance of all groups)."""
    _require_columns(df, [value, group])
    data = df[[group, value]].dropna()
    anova = pg.anova(data=data, dv=value, between=group).assign(n=len(data))
    tukey = pg.pairwise_tukey(data=data, dv=value, between=group)
    counts = data[group].value_counts()
    tukey["n"] = counts.reindex(tukey["A"]).to_numpy() + counts.reindex(tukey["B"]).to_numpy()
    return anova, tukey


def ttest_ind(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *,
              equal_var: bool = False) -> dict[str, float | str]:
    """Two independent samples, ``a - b``: Welch's t-test by default (``equal_var=True``:
    Student's), and Cohen's ``d`` on the pooled sd, signed like t (``pingouin.compute_effsize``)."""
    x, y = _vector(a, "a"), _vector(b, "b")
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    result = sps.ttest_ind(x, y, equal_var=equal_var)
    d = pg.compute_effsize(x, y, paired=False, eftype="cohen") if min(x.size, y.size) > 1 else np.nan
    return {"test": "student" if equal_var else "welch", "n": int(x.size + y.size),
            "n_a": int(x.size), "n_b": int(y.size), "mean_a": float(x.mean()) if x.size else np.nan,
            "mean_b": float(y.mean()) if y.size else np.nan, "t": float(result.statistic),
            "dof": float(result.df), "p": float(result.pvalue), "cohen_d": float(d)}


def anova_two_way(df: pd.DataFrame, value: str, factors: Sequence[str]) -> pd.DataFrame:
    """Two-way between-groups ANOVA with interaction (``pingouin.anova``, type II sums of
    squares, partial eta squared ``np2``); gains ``n``, the rows used (NaNs dropped)."""
    if len(factors) != 2:
        raise ValueError(f"give two factors, got {list(factors)}")
    _require_columns(df, [value, *factors])
    data = df[[*factors, value]].dropna()
    return pg.anova(data=data, dv=value, between=list(factors), effsize="np2").assign(n=len(data))


def paired_shift(before: Sequence[float] | np.ndarray, after: np.ndarray, *, n_boot: int = 2000,
                 seed: int = 0, margin: float | None = None, alpha: float = 0.05) -> dict[str, float]:
    """How a per-image score moved from ``before`` (n,) to ``after`` (n, seeds): Q2's shift. Each
    image's Δ is its mean over seeds minus its ``before`` value; Wilcoxon signed-rank,
    paired t and Cohen's ``d_z`` test those n Δs (as `paired_comparison`). The bootstrap CI
    of the mean Δ resamples images and, independently, seeds (two-level), so seed-to-seed
    spread widens it; with one seed it is the ordinary bootstrap over images. With a
    ``margin`` (the smallest effect size of interest), `equivalence` adds ``p_tost``."""
    x = _vector(before, "before")
    y = np.asarray(after, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    if y.ndim != 2 or y.shape[0] != x.size:
        raise ValueError(f"after must be (n, seeds) with n = {x.size}, got shape {y.shape}")
    keep = ~np.isnan(x) & ~np.isnan(y).any(axis=1)
    x, y = x[keep], y[keep]
    result = paired_comparison(y.mean(axis=1), x, n_boot=n_boot, seed=seed)
    if x.size:
        rng = np.random.default_rng(seed)
        images = rng.integers(0, x.size, (n_boot, x.size))
        seeds = rng.integers(0, y.shape[1], (n_boot, y.shape[1]))
        deltas = y - x[:, None]
        estimates = deltas[images[:, :, None], seeds[:, None, :]].mean(axis=(1, 2))
        result["ci_low"], result["ci_high"] = (float(v) for v in np.quantile(estimates, [0.025, 0.975]))
    tost = equivalence(y.mean(axis=1) - x, margin, alpha=alpha) if margin else {}
    return {**result, "p_tost": tost.get("p_tost", np.nan), "n_dropped": int((~keep).sum()),
            "n_seeds": int(y.shape[1])}


MIN_SIDE = 10  # images each side of a right / wrong split needs before it is tested


def split_comparison(right: Sequence[float] | np.ndarray, wrong: Sequence[float] | np.ndarray) -> dict:
    """The scores of the images a classifier got right against those it got wrong (two independent
    sets of images, ``right - wrong``): each side's n and mean, their difference and the two-sided
    Mann-Whitney U p (``scipy.stats.mannwhitneyu``). NaNs are dropped. A side with fewer than
    `MIN_SIDE` images is reported (its mean) but not tested: p is NaN and ``note`` says why."""
    a, b = (_vector(v, name) for v, name in ((right, "right"), (wrong, "wrong")))
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    mean_a, mean_b = (float(v.mean()) if v.size else np.nan for v in (a, b))
    result = {"n_right": int(a.size), "n_wrong": int(b.size), "mean_right": mean_a,
              "mean_wrong": mean_b, "diff": mean_a - mean_b}
    if min(a.size, b.size) < MIN_SIDE:
        return {**result, "p_mwu": np.nan, "note": f"not tested: fewer than {MIN_SIDE} images on a side"}
    p = sps.mannwhitneyu(a, b, alternative="two-sided").pvalue
    return {**result, "p_mwu": float(p), "note": ""}
