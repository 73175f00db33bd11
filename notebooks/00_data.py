# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (sightline)
#     language: python
#     name: python3
#   sightline:
#     needs: []
# ---

# %% [markdown]
# # The data: images and expert regions
# What the study scores against: the annotated images, their labels (WikiChurches: the
# architectural style) where the dataset has them, and the expert regions (boxes or
# masks) of each feature type. Everything below is read from the dataset the params
# point at (`dataset`), with the reader's own account of what it clamped, skipped or
# left out.

# %% tags=["parameters"]
# Defaults: the demo profile (params/demo.yaml), paths from the project root, so this
# notebook runs as is in JupyterLab once `python build.py` has made the demo data; a
# build injects its own profile's values after this cell. Run here, the notebook writes its
# tables to report/demo/interactive/tables/ (set tables_dir to change it): the build's
# report/demo/tables/, which the report and the explorer read, stays as the build made it.
from sightline.project import default

dataset = default("dataset")
report = default("report")
tables_dir = default("tables_dir")

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from sightline import data, formatting, plots

plots.setup()
tables = Path(tables_dir)
tables.mkdir(parents=True, exist_ok=True)
wc = data.load_dataset(dataset)

# %% [markdown]
# ## The regions table
# One row per expert region (its box relative to the image, clamped to [0, 1]; a mask
# region's box is the mask's bounding box and its area the mask's share of the image);
# written to `tables/boxes.csv`, the table every later count comes from.

# %%
LABEL = wc.label_name
boxes = pd.DataFrame(
    [
        {
            "image_id": s.image_id, "box_index": i, "group_label": b.group_label,
            "label": b.label, "feature": b.feature, "left": b.left, "top": b.top,
            "width": b.width, "height": b.height, "kind": "mask" if b.is_mask else "box",
            "tags": ";".join(s.tags), LABEL: s.label,
        }
        for s in wc.samples
        for i, b in enumerate(s.boxes)
    ]
)
mask_area = {(s.image_id, i): float(b.mask().mean()) for s in wc.samples
             for i, b in enumerate(s.boxes) if b.is_mask}
boxes["area"] = [mask_area.get((r.image_id, r.box_index), r.width * r.height)
                 for r in boxes.itertuples()]
boxes.to_csv(tables / "boxes.csv", index=False)
images = pd.DataFrame(
    [{"image_id": s.image_id, LABEL: s.label, "n_tags": len(s.tags), "n_boxes": len(s.boxes),
      "width": s.width, "height": s.height} for s in wc.samples]
)
images.to_csv(tables / "images.csv", index=False)
kinds = boxes["kind"].value_counts()
pool = (f"Fine-tuning pool: {len(wc.pool)} {LABEL}-labelled images "
        f"({', '.join(f'{k} {v}' for k, v in wc.pool['split'].value_counts().sort_index().items())})."
        if wc.has_pool else "No fine-tuning pool (Q2 needs labelled training images).")
display(Markdown(
    f"**{len(images)} annotated images ({wc.kind}), {len(boxes)} regions "
    f"({', '.join(f'{v} {k}es' if k == 'box' else f'{v} {k}s' for k, v in kinds.items())}), "
    f"{boxes['feature'].nunique()} feature types** (of {len(wc.features)} in the dataset); "
    + (f"{images[LABEL].notna().sum()} images carry a {LABEL} "
       f"({images[LABEL].nunique()} distinct), {int((images['n_tags'] > 1).sum())} more than one "
       "tag. " if wc.has_labels else "no image labels. ")
    + pool
    + (" Q2 keeps the test images held out and splits train + val anew, church-disjoint and "
       f"stratified by {LABEL} (`finetune.val_fraction`), so its validation set differs in size."
       if wc.has_pool else "")
))
counts = wc.report.get("counts", {})
display(formatting.table(pd.Series(counts, name="count").rename_axis("reader report")))

# %% [markdown]
# ## Images and regions per label
# Only where the dataset labels its images (WikiChurches: the image's first main style);
# regions per image shows how crowded the annotation is.

# %%
palette = (plots.STYLE_COLOURS if set(images[LABEL].dropna()) <= set(plots.STYLE_COLOURS)
           else None)
if wc.has_labels:
    per_label = images.groupby(LABEL).agg(images=("image_id", "size"), boxes=("n_boxes", "sum"),
                                          boxes_per_image=("n_boxes", "mean")).round(2)
    per_label.to_csv(tables / "styles.csv")
    display(formatting.table(per_label, digits=2))
fig, axes = plt.subplots(1, 1 + wc.has_labels, squeeze=False,
                         figsize=(plots.PAGE_WIDTH / (1 if wc.has_labels else 2), 3.0))
if wc.has_labels:
    sns.countplot(data=images, x=LABEL, hue=LABEL, palette=palette, ax=axes[0, 0], legend=False)
    axes[0, 0].set_title(f"annotated images per {LABEL}")
    axes[0, 0].tick_params(axis="x", labelsize=8, rotation=20)
sns.histplot(images["n_boxes"], discrete=True, ax=axes[0, -1])
axes[0, -1].set_title("regions per image")
fig.tight_layout()

# %% [markdown]
# ## Feature types and region sizes
# Region area is the fraction of the image a region covers: small features are hard to
# hit at a fixed top-k threshold, which is why the metrics also report IoU relative to
# the best IoU a map could reach.

# %%
features = boxes.groupby("feature").agg(boxes=("image_id", "size"), images=("image_id", "nunique"),
                                        median_area=("area", "median")).sort_values("boxes",
                                                                                    ascending=False)
features.to_csv(tables / "features.csv")
fig, axes = plt.subplots(1, 2, figsize=(plots.PAGE_WIDTH + 1, max(3, 0.22 * len(features))))
sns.barplot(y=features.index, x=features["boxes"], ax=axes[0], color="#4c72b0")
axes[0].set_title("regions per feature type")
axes[0].set_ylabel("")
sns.histplot(boxes, x="area", hue=LABEL if wc.has_labels else None,
             palette=palette if wc.has_labels else None, log_scale=True, element="step", ax=axes[1])
axes[1].set_title("region area (fraction of image, log scale)")
fig.tight_layout()

# %% [markdown]
# ## Examples
# A few annotated images with their expert regions (the first images of each label, or
# the first images): boxes as drawn, masks as their bounding box over the mask itself.

# %%
n_labels = max(1, images[LABEL].nunique())
firsts = images.groupby(LABEL).head(max(1, report["examples"] // n_labels)) if wc.has_labels \
    else images
examples = firsts["image_id"].head(report["examples"]).tolist()
by_id = {s.image_id: s for s in wc.samples}
cols = 4
rows = int(np.ceil(len(examples) / cols))
fig, axes = plt.subplots(rows, cols, figsize=(plots.PAGE_WIDTH, 2.0 * rows), squeeze=False,
                         layout="constrained")
for ax, image_id in zip(axes.flat, examples, strict=False):
    sample = by_id[image_id]
    image = data.load_image(sample.path)
    plots.show_image(ax, image, f"{sample.label}\n{image_id}" if sample.label else image_id)
    for region in sample.boxes:
        if region.is_mask:
            ax.imshow(np.ma.masked_where(~region.mask(), np.ones((image.height, image.width))),
                      cmap="autumn", alpha=0.4, vmin=0, vmax=1)
    ltwh = sample.boxes_ltwh()
    xyxy = np.c_[ltwh[:, :2], ltwh[:, :2] + ltwh[:, 2:]]
    plots.draw_boxes(ax, xyxy, image.width, image.height, labels=[b.feature for b in sample.boxes])
for ax in axes.flat[len(examples):]:
    ax.axis("off")
