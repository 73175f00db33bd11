# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (sightline)
#     language: python
#     name: python3
#   sightline:
#     needs: []
# ---

# %% [markdown]
# # The data: images and expert boxes
# What the study scores against: the annotated images, their styles and the expert
# boxes of architectural features. Everything below is read from the dataset the
# params point at (`dataset.root`), with the reader's own account of what it clamped,
# skipped or left out.

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
# ## The boxes table
# One row per expert box (coordinates relative to the image, clamped to [0, 1]);
# written to `tables/boxes.csv`, the table every later count comes from.

# %%
boxes = pd.DataFrame(
    [
        {
            "image_id": s.image_id, "box_index": i, "group_label": b.group_label,
            "label": b.label, "feature": b.feature, "left": b.left, "top": b.top,
            "width": b.width, "height": b.height, "styles": ";".join(s.styles),
            "style": s.style,
        }
        for s in wc.samples
        for i, b in enumerate(s.boxes)
    ]
)
boxes["area"] = boxes["width"] * boxes["height"]
boxes.to_csv(tables / "boxes.csv", index=False)
images = pd.DataFrame(
    [{"image_id": s.image_id, "style": s.style, "n_styles": len(s.styles), "n_boxes": len(s.boxes),
      "width": s.width, "height": s.height} for s in wc.samples]
)
images.to_csv(tables / "images.csv", index=False)
display(Markdown(
    f"**{len(images)} annotated images, {len(boxes)} boxes, "
    f"{boxes['feature'].nunique()} feature types** (of {len(wc.features)} in the ontology); "
    f"{int((images['n_styles'] > 1).sum())} images carry more than one style. "
    f"Fine-tuning pool: {len(wc.pool)} style-labelled images, by the dataset's own split files "
    f"({', '.join(f'{k} {v}' for k, v in wc.pool['split'].value_counts().sort_index().items())}). "
    "Q2 keeps the test images held out and splits train + val anew, church-disjoint and "
    "stratified by style (`finetune.val_fraction`), so its validation set differs in size."
))
counts = wc.report.get("counts", {})
display(formatting.table(pd.Series(counts, name="count").rename_axis("reader report")))

# %% [markdown]
# ## Images and boxes per style
# Style is the image's first main style; boxes per image shows how crowded the
# annotation is.

# %%
per_style = images.groupby("style").agg(images=("image_id", "size"), boxes=("n_boxes", "sum"),
                                        boxes_per_image=("n_boxes", "mean")).round(2)
per_style.to_csv(tables / "styles.csv")
display(formatting.table(per_style, digits=2))
fig, axes = plt.subplots(1, 2, figsize=(plots.PAGE_WIDTH, 3.0))
sns.countplot(data=images, x="style", hue="style", palette=plots.STYLE_COLOURS, ax=axes[0],
              legend=False)
axes[0].set_title("annotated images per style")
axes[0].tick_params(axis="x", labelsize=8, rotation=20)
sns.histplot(images["n_boxes"], discrete=True, ax=axes[1])
axes[1].set_title("boxes per image")
fig.tight_layout()

# %% [markdown]
# ## Feature types and box sizes
# Box area is the fraction of the image a box covers: small features are hard to hit
# at a fixed top-k threshold, which is why the metrics also report IoU relative to the
# best IoU a map could reach.

# %%
features = boxes.groupby("feature").agg(boxes=("image_id", "size"), images=("image_id", "nunique"),
                                        median_area=("area", "median")).sort_values("boxes",
                                                                                    ascending=False)
features.to_csv(tables / "features.csv")
fig, axes = plt.subplots(1, 2, figsize=(plots.PAGE_WIDTH + 1, max(3, 0.22 * len(features))))
sns.barplot(y=features.index, x=features["boxes"], ax=axes[0], color="#4c72b0")
axes[0].set_title("boxes per feature type")
axes[0].set_ylabel("")
sns.histplot(boxes, x="area", hue="style", palette=plots.STYLE_COLOURS, log_scale=True,
             element="step", ax=axes[1])
axes[1].set_title("box area (fraction of image, log scale)")
fig.tight_layout()

# %% [markdown]
# ## Examples
# A few annotated images with their expert boxes (first images of each style).

# %%
examples = (images.groupby("style").head(max(1, report["examples"] // 4))["image_id"]
            .head(report["examples"]).tolist())
by_id = {s.image_id: s for s in wc.samples}
cols = 4
rows = int(np.ceil(len(examples) / cols))
fig, axes = plt.subplots(rows, cols, figsize=(plots.PAGE_WIDTH, 2.0 * rows), squeeze=False,
                         layout="constrained")
for ax, image_id in zip(axes.flat, examples, strict=False):
    sample = by_id[image_id]
    image = data.load_image(sample.path)
    plots.show_image(ax, image, f"{sample.style}\n{image_id}")
    ltwh = sample.boxes_ltwh()
    xyxy = np.c_[ltwh[:, :2], ltwh[:, :2] + ltwh[:, 2:]]
    plots.draw_boxes(ax, xyxy, image.width, image.height, labels=[b.feature for b in sample.boxes])
for ax in axes.flat[len(examples):]:
    ax.axis("off")
