"""Q2: how far fine-tuning moved each map's alignment, paired on the annotated images.

The frozen model's rows of the metrics table against its fine-tuned variants'
(``<strategy>.s<seed>``), same image, method, layer, target and threshold: each image's Δ is
its fine-tuned value (mean over seeds) minus its frozen value, tested by `stats.paired_shift`
and read against the metric's margin (``stats.sesoi``) by `stats.verdicts`, in the direction
the metric's registry entry calls better. A linear probe leaves attention maps bit-identical:
Δ = 0 on every image, equivalent by construction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from . import registry, stats
from .finetune import strategy_of

METRICS = tuple(registry.sesoi_defaults())  # Q2's metrics: those with a margin
COLUMNS = ["model", "strategy", "method", "layer", "metric", "threshold", "n", "n_seeds",
           "mean_frozen", "mean_finetuned", "delta", "ci_low", "ci_high", "p_wilcoxon", "p_ttest",
           "p_holm", "margin", "p_tost", "d_z", "verdict"]
FROZEN = "frozen"
SHIFT = {"n": "n", "n_seeds": "n_seeds", "mean_frozen": "mean_b", "mean_finetuned": "mean_a",
         "delta": "mean_diff", "ci_low": "ci_low", "ci_high": "ci_high", "p_wilcoxon": "p_wilcoxon",
         "p_ttest": "p_t", "p_tost": "p_tost", "d_z": "d_z"}  # column -> `stats.paired_shift` field


def _paired_frames(scores: pd.DataFrame, keys: Sequence[str]
                   ) -> dict[tuple, tuple[pd.Series, pd.DataFrame]]:
    """``{(model, strategy, *keys): (frozen per image, fine-tuned image x seed table)}``."""
    rows = scores[scores["variant"].astype(str) != "baseline"]
    variant = rows["variant"].astype(str)
    rows = rows.assign(strategy=variant.map(strategy_of), variant=variant)
    frozen = rows[rows["strategy"] == FROZEN]
    tuned = rows[rows["strategy"] != FROZEN]
    index = ["model", *keys]
    before = {k: g.set_index("image_id")["value"] for k, g in frozen.groupby(index, observed=True)}
    groups = ["model", "strategy", *keys]
    # one reshape for all groups (a pivot per group costs 15 ms each), mean as pivot_table's
    wide = tuned.groupby([*groups, "image_id", "variant"], observed=True)["value"].mean()
    wide = wide.unstack("variant")
    seeds = tuned.groupby(groups, observed=True)["variant"].unique()
    out = {}
    for (model, strategy, *rest), group in wide.groupby(level=list(range(len(groups)))):
        reference = before.get((model, *rest))
        if reference is None:
            continue
        variants = sorted(seeds[(model, strategy, *rest)])
        group = group.droplevel(list(range(len(groups))))[variants]
        out[(model, strategy, *rest)] = (reference, group.reindex(reference.index))
    return out


def _union(scores: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Head-mean rows of ``metrics`` against each image's union; threshold-free rows at -1."""
    union = scores[(scores["target"].astype(str) == "union") & (scores["head"] == -1)
                   & scores["metric"].astype(str).isin(metrics)]
    return union.assign(threshold=union["threshold"].fillna(-1.0))


def _key(model: str, strategy: str, method: str, layer: int, metric: str, threshold: float) -> dict:
    """A shift row's map and metric; a threshold-free metric's -1 back to NaN."""
    return {"model": model, "strategy": strategy, "method": method, "layer": int(layer),
            "metric": metric, "threshold": np.nan if threshold < 0 else float(threshold)}


def deltas(scores: pd.DataFrame, *, headline_percentile: float, sesoi: Mapping[str, float],
           alpha: float = 0.05, n_boot: int = 2000, seed: int = 0,
           metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """The shift table (``q2_deltas.csv``): one row per model x strategy x method x layer x
    metric x threshold, on each image's union of boxes (head mean). ``p_holm`` adjusts the
    Wilcoxon p over the family model x strategy x metric that shares a method, a layer and a
    threshold (threshold-free metrics join the headline percentile's family)."""
    missing = sorted(set(metrics) - set(sesoi))
    if missing:
        raise KeyError(f"no smallest effect size of interest for {missing}: set them under "
                       "stats.sesoi in the params file")
    rows = []
    for key, (before, after) in _paired_frames(_union(scores, metrics),
                                               ["method", "layer", "metric", "threshold"]).items():
        margin = sesoi[key[4]]
        result = stats.paired_shift(before.to_numpy(), after.to_numpy(), n_boot=n_boot, seed=seed,
                                    margin=margin, alpha=alpha)
        rows.append({**_key(*key), "margin": margin, **{c: result[f] for c, f in SHIFT.items()}})
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("p_holm", "verdict")])
    family = table["threshold"].fillna(headline_percentile)
    table["p_holm"] = np.nan
    for _, index in table.groupby([table["method"], table["layer"], family]).groups.items():
        table.loc[index, "p_holm"] = stats.holm(table.loc[index, "p_wilcoxon"].to_numpy())
    lower = table["metric"].map(lambda m: not registry.METRICS[m].higher_is_better)
    table["verdict"] = stats.verdicts(table["delta"], table["p_holm"], table["p_tost"],
                                      table["margin"], alpha=alpha,
                                      lower_is_better=lower.astype(bool))
    return table[COLUMNS].sort_values(["model", "strategy", "method", "layer", "metric",
                                       "threshold"], ignore_index=True)


def target_deltas(scores: pd.DataFrame, *, metric: str, threshold: float | None,
                  boxes: bool = True) -> pd.DataFrame:
    """Per single box (``boxes``) or per image's union: Δ of ``metric`` (seed mean minus
    frozen), with the image and the box's feature type (``union`` for the union)."""
    is_union = scores["target"].astype(str) == "union"
    boxes = scores[(~is_union if boxes else is_union) & (scores["head"] == -1)
                   & (scores["metric"].astype(str) == metric)]
    if threshold is not None:
        boxes = boxes[np.isclose(boxes["threshold"], threshold)]
    boxes = boxes.assign(box=boxes["image_id"].astype(str) + "/" + boxes["target"].astype(str)
                         + "/" + boxes["feature"].astype(str))
    frames = []
    for (model, strategy, method, layer), (before, after) in _paired_frames(
            boxes.drop(columns=["image_id"]).rename(columns={"box": "image_id"}),
            ["method", "layer"]).items():
        parts = before.index.str.split("/", n=2)
        frames.append(pd.DataFrame({
            "model": model, "strategy": strategy, "method": method, "layer": layer,
            "image_id": parts.str[0], "feature": parts.str[2],
            "delta": after.mean(axis=1).to_numpy() - before.to_numpy()}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def deltas_by_correct(scores: pd.DataFrame, *, headline_percentile: float,
                      metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """The shift split by the fine-tuned head's style prediction (``q2_deltas_by_correct``):
    per model x strategy x method x layer x metric (union, head mean, the headline
    percentile), the mean Δ on the images every seed classifies right and on those every seed
    gets wrong, and `stats.split_comparison` between the two. Images the seeds disagree on
    (``n_mixed``) or without a prediction are on neither side; linear probes are left out."""
    union = _union(scores, metrics)
    union = union[(union["threshold"] < 0) | np.isclose(union["threshold"], headline_percentile)]
    tuned = union[~union["variant"].astype(str).isin([FROZEN, "baseline"])]
    marks = tuned[["model", "variant", "image_id", "correct"]].drop_duplicates().astype(
        {"model": str, "variant": str, "image_id": str})
    marks = marks.assign(strategy=marks["variant"].map(strategy_of))
    agreed = marks.groupby(["model", "strategy", "image_id"])["correct"].agg(
        lambda c: c.iloc[0] if c.nunique(dropna=False) == 1 else "mixed").astype(object)
    agreed = agreed.where(agreed.notna(), None)  # True, False, "mixed" or None
    rows = []
    for key, (before, after) in _paired_frames(
            union, ["method", "layer", "metric", "threshold"]).items():
        if key[1] == "linear_probe":
            continue
        delta = after.mean(axis=1) - before
        side = pd.Series(delta.index.astype(str).map(agreed.loc[key[:2]]), index=delta.index)
        rows.append({**_key(*key), "n_mixed": int(side.eq("mixed").sum()),
            **stats.split_comparison(delta[side.eq(True)], delta[side.eq(False)])})
    columns = ["model", "strategy", "method", "layer", "metric", "threshold", "n_mixed",
               "n_right", "n_wrong", "mean_right", "mean_wrong", "diff", "p_mwu", "note"]
    table = pd.DataFrame(rows, columns=columns).rename(
        columns={"mean_right": "delta_right", "mean_wrong": "delta_wrong"})
    return table.sort_values(["model", "strategy", "method", "layer", "metric"], ignore_index=True)
