# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (sightline)
#     language: python
#     name: python3
#   sightline:
#     needs: [q1_alignment]
#     requires: [attention_heads]
# ---

# %% [markdown]
# # Q3: do single attention heads specialise?
# Do individual heads align with the expert boxes better than their siblings, and with
# which feature types? Read from the Q1 metrics table (no map is recomputed).
#
# Readouts: for CLS-token models (DINOv2, DINOv3, MAE, CLIP) a head's map is its CLS
# attention row over the patches (method `cls`). The SigLIP family has no CLS token:
# its heads are the pooling head's probe heads (method `probe`), a different readout
# that sits after the last block — comparable within a model, not head-for-head with
# CLS heads. All scores are in each model's own input frame (`tables/scores.parquet`).

# %% tags=["parameters"]
# Defaults: the demo profile (params/demo.yaml), paths from the project root, so this
# notebook runs as is in JupyterLab once `python build.py` has made the demo data; a
# build injects its own profile's values after this cell. Run here, the notebook writes its
# tables to report/demo/interactive/tables/ (set tables_dir to change it): the build's
# report/demo/tables/, which the report and the explorer read, stays as the build made it.
from sightline.project import default

dataset = default("dataset")
models = default("models")
metrics = default("metrics")
heads = default("heads")
stats = default("stats")
report = default("report")
seed = default("seed")
tables_dir = default("tables_dir")

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from sightline import cache, data, extract, formatting, plots, selection
from sightline import heads as hd
from sightline import models as registry
from sightline.config import ModelChoice

plots.setup()
tables = Path(tables_dir)
P = float(metrics["headline_percentile"])
ALPHA = stats["alpha"]
HEAD_METHODS = ("cls", "probe")
VARIANT = "frozen"  # the variant whose heads are ranked (e.g. "full.s0"; Q2 compares them)
scores = pd.read_parquet(tables / "scores.parquet")
scores = scores[scores["method"].isin(HEAD_METHODS) & (scores["variant"] == VARIANT)]
stores = pd.read_csv(tables / "stores.csv").set_index(["model", "variant"])["store"]
choices = {extract.model_name(c): c for c in (ModelChoice(**m) for m in models)}
display(Markdown(f"{scores['model'].nunique()} models with per-head maps; "
                 f"{scores[scores['head'] >= 0].groupby(['model', 'layer', 'head']).ngroups} heads."))
plots.random_weights_banner(models)

# %% [markdown]
# ## Head rankings
# Per model: every (layer, head) by its mean IoU at the headline percentile against the union of boxes, its
# mean rank among the model's heads per image (1 = best) and how often it is in an
# image's top 3. Heatmaps show the mean per layer × head.

# %%
ranking = hd.head_ranking(scores, metric="iou", threshold=P)
coverage_ranking = hd.head_ranking(scores, metric="coverage", threshold=None)
display(formatting.table(ranking.groupby(["model", "method"]).head(3).drop(columns=["variant"])))
names = list(ranking["model"].unique())
cols = min(3, len(names))
rows_n = int(np.ceil(len(names) / cols))
fig, axes = plt.subplots(rows_n, cols, squeeze=False, figsize=(plots.PAGE_WIDTH, 2.2 * rows_n + 0.6),
                         layout="constrained")
for ax in axes.flat[len(names):]:
    ax.axis("off")
scale = {"vmin": 0, "vmax": float(ranking["mean"].max())}  # one colour scale for every model
for ax, name in zip(axes.flat, names, strict=False):
    grid = ranking[ranking["model"] == name].pivot_table(index="layer", columns="head",
                                                          values="mean", observed=True)
    sns.heatmap(grid, cmap="viridis", ax=ax, cbar=False, **scale)
    method = ranking.loc[ranking["model"] == name, "method"].iloc[0]
    ax.set_title(f"{name} ({method})", fontsize=8)
    ax.tick_params(labelsize=7)
fig.colorbar(plt.cm.ScalarMappable(plt.Normalize(**scale), cmap="viridis"), ax=axes,
             shrink=0.8, label=f"mean IoU@{P:g}")
fig.suptitle(f"mean IoU@{P:g} per layer × head (union), one colour scale", fontsize=10)
plt.show()

# %% [markdown]
# ## How concentrated is alignment — and is it more than chance?
# Best head vs the median head, the share of the total held by the top 5 heads, and a
# permutation test: heads shuffled within each image (are the best heads better than
# the best of exchangeable heads?). The best of a hundred or more heads, scored on the
# images it was picked on, is optimistic; `best_cross_fit` is its honest counterpart:
# over 100 seeded halvings of the images the head is chosen on one half and scored on
# the other (and back), averaged (`sightline.selection`); `head_stability` is how often
# the halves chose the in-sample best head.
# `p_holm` adjusts the permutation p over the table's rows. A permutation p is at least
# 1 / (n + 1), so with m tests Holm's smallest p is m / (n + 1): the number of
# permutations (`heads.n_permutations`) must exceed m / α − 1 for any effect, however
# strong, to pass; the line under each test table says whether it does.

# %%
concentrated = hd.concentration(ranking)
tested = hd.concentration_test(scores, metric="iou", threshold=P,
                               n_permutations=heads["n_permutations"], seed=seed)
concentrated = concentrated.merge(tested, on=["model", "variant", "method"], how="left",
                                  suffixes=("", "_test"))
head_rows = hd.select(scores, metric="iou", threshold=P)
head_rows = head_rows[head_rows["head"] >= 0]
GROUP = ["model", "variant", "method"]
honest_head, _ = selection.cross_fit(head_rows[head_rows["target"] == "union"], by=GROUP,
                                     candidate=["layer", "head"], seed=seed)
honest_head = honest_head.rename(columns={"cross_fit": "best_cross_fit",
                                          "stability": "head_stability"})
concentrated = concentrated.merge(honest_head[GROUP + ["best_cross_fit", "head_stability"]],
                                  on=GROUP, how="left")
concentrated.to_csv(tables / "head_concentration.csv", index=False)
few = concentrated["n_heads"] <= 5  # the top 5 heads are all of them: a share of 1 by construction
display(formatting.table(
    concentrated[["model", "method", "best_layer", "best_head", "best_mean", "best_cross_fit",
                  "head_stability", "median_mean", "ratio", "top5_share", "n_heads", "statistic",
                  "p_value", "p_holm"]].assign(top5_share=concentrated["top5_share"].where(~few)),
    digits=4, caption=("top5_share: – for a model with 5 heads or fewer ("
                       + ", ".join(concentrated.loc[few, "model"]) + "), whose top 5 heads are "
                       "all its heads (a share of 1 by construction).") if few.any() else None))


def resolution_note(n_tests, family):
    """Whether ``n_tests`` Holm-adjusted permutation tests can pass at alpha at all."""
    n, floor = heads["n_permutations"], n_tests / (heads["n_permutations"] + 1)
    verdict = ("so a strong enough effect can pass" if floor < ALPHA else
               f"so **no effect can pass**: use at least {hd.min_permutations(n_tests, ALPHA)}")
    return Markdown(f"{n_tests} tests {family}, {n} permutations: the smallest possible Holm p "
                    f"is {n_tests} / {n + 1} = {floor:.3g} against α = {ALPHA}, {verdict}.")


display(resolution_note(len(tested), "(one per row)"))
untrained = [n for n, c in choices.items() if c.weights == "random"]
rejected = concentrated[concentrated["model"].isin(untrained) & (concentrated["p_holm"] < ALPHA)]
if untrained and len(tested):
    display(Markdown(
        f"{rejected['model'].nunique()} of {len(set(untrained) & set(concentrated['model']))} "
        f"random-weight model(s) reject exchangeable heads (Holm p < {ALPHA}): the heads of an "
        "untrained network differ from one another too, so a rejection says that heads differ, "
        "not that training made them align; read a real model's test beside the same "
        "architecture with random weights."))

# %% [markdown]
# ## Heads × feature types
# Mean single-box IoU (headline percentile) of each head on each feature type with at least
# `heads.min_boxes` boxes; the best head per feature type; and the specialisation
# test: feature labels shuffled across boxes, statistic = how far the most lifted head
# stands out on this feature beyond its own average (so a head good at everything is
# no specialist). `best_cross_fit`: the best head per feature type chosen on the boxes
# of half the images and scored on the other half's, as above.

# %%
matrix = hd.head_feature_matrix(scores, metric="iou", threshold=P, min_boxes=heads["min_boxes"])
best_per_feature = hd.best_head_per_feature(matrix)
specialists = hd.specialisation_test(scores, metric="iou", threshold=P,
                                     min_boxes=heads["min_boxes"],
                                     n_permutations=heads["n_permutations"], seed=seed)
best_per_feature = best_per_feature.merge(specialists, on=["model", "variant", "method", "feature"],
                                          how="left", suffixes=("", "_test"))
box_rows = head_rows[(head_rows["target"] != "union")
                     & head_rows["feature"].isin(matrix["feature"].unique())]
honest_feature, _ = selection.cross_fit(box_rows, by=[*GROUP, "feature"],
                                        candidate=["layer", "head"], unit=["image_id", "target"],
                                        seed=seed)
best_per_feature = best_per_feature.merge(
    honest_feature[[*GROUP, "feature", "cross_fit"]].rename(columns={"cross_fit": "best_cross_fit"}),
    on=[*GROUP, "feature"], how="left")
best_per_feature.to_csv(tables / "best_head_per_feature.csv", index=False)
display(formatting.table(
    best_per_feature[["model", "feature", "n_boxes", "best_layer", "best_head", "best_mean",
                      "best_cross_fit", "advantage", "layer", "head", "lift", "p_value", "p_holm"]]
    .rename(columns={"layer": "specialist_layer", "head": "specialist_head"}), digits=4))
if len(specialists):
    display(resolution_note(int(specialists.groupby(["model", "variant", "method"]).size().max()),
                            "per model and readout (one per feature type)"))
feature_scale = {"vmin": 0, "vmax": float(matrix["mean"].max())}  # shared by every model
for name in matrix["model"].unique():
    sub = matrix[matrix["model"] == name]
    top = sub.groupby(["layer", "head"])["mean"].mean().nlargest(16).index
    sub = sub.set_index(["layer", "head"]).loc[top].reset_index()
    grid = sub.assign(h=sub["layer"].astype(str) + "." + sub["head"].astype(str)).pivot_table(
        index="feature", columns="h", values="mean", observed=True)
    fig, ax = plt.subplots(figsize=(min(plots.PAGE_WIDTH, 0.4 * grid.shape[1] + 3),
                                    0.3 * grid.shape[0] + 1.5), layout="constrained")
    sns.heatmap(grid, cmap="magma", ax=ax, cbar_kws={"label": f"IoU@{P:g}"}, **feature_scale)
    every = len(top) == matrix[matrix["model"] == name].groupby(["layer", "head"]).ngroups
    ax.set_title(f"{name}: IoU@{P:g} per feature type, "
                 f"{f'all {len(top)} heads' if every else f'the {len(top)} best heads'} "
                 "(layer.head)", fontsize=9)
    ax.tick_params(labelsize=7)

# %% [markdown]
# ## The tidy heads table
# `tables/heads.parquet`: per model, variant, method, layer, head and feature (or
# union), the mean score and rank statistics for IoU at the headline percentile and coverage. Fine-tuned
# variants drop into the same table through the `variant` column.

# %%
heads_table = pd.concat([
    hd.heads_table(scores, metric="iou", threshold=P, min_boxes=heads["min_boxes"]),
    hd.heads_table(scores, metric="coverage", threshold=None, min_boxes=heads["min_boxes"]),
], ignore_index=True)
heads_table.to_parquet(tables / "heads.parquet", index=False)
display(Markdown(f"{len(heads_table):,} rows."))

# %% [markdown]
# ## The best head at work
# For each model, its best head's map on the images where it wins most and fails most.

# %%
wc = data.load_dataset(dataset)
by_id = {s.image_id: s for s in wc.samples}
union = hd.select(scores, metric="iou", threshold=P)
union = union[union["target"] == "union"]
g = report["gallery_size"]
top = concentrated.dropna(subset=["best_layer"])
fig, axes = plt.subplots(len(top), 2 * g, figsize=(min(plots.PAGE_WIDTH, 1.9 * 2 * g), 2.1 * len(top)),
                         squeeze=False, layout="constrained")
for r, row in enumerate(top.itertuples()):
    layer, head = int(row.best_layer), int(row.best_head)
    own = union[(union["model"] == row.model) & (union["layer"] == layer)
                & (union["head"] == head)].dropna(subset=["value"]).sort_values("value")
    picks = [*own.tail(g)["image_id"][::-1], *own.head(g)["image_id"]]
    store = cache.MapStore(stores[(row.model, row.variant)])
    geometry = registry.spec_for(choices[row.model]).geometry
    _, maps = store.read(row.method, layer, picks)
    for c, image_id in enumerate(picks):
        sample = by_id[image_id]
        frame = geometry.frame_image(data.load_image(sample.path))
        xyxy = geometry.boxes_to_frame(sample.boxes_ltwh(), sample.width, sample.height)
        value = own.set_index("image_id")["value"][image_id]
        plots.overlay(axes[r, c], frame, maps[c, head], xyxy,
                      title=f"{row.model} L{layer}H{head}\n{'wins' if c < g else 'fails'}: {value:.2f}")
