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
# What the study scores against: the annotated images, their labels where the dataset
# has them, and the expert regions (boxes or masks) of each feature type. Everything below
# is read from the dataset the params point at (`dataset`), with the reader's own account
# of what it clamped, skipped or left out.

# %% tags=["parameters"]
# The demo profile's values (a build injects its own); run here, tables go to report/demo/interactive/tables/.
from sightline.notebook_defaults import default

dataset = default("dataset")
report = default("report")
tables_dir = default("tables_dir")

# %%
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from IPython.display import Markdown, display

from sightline import data, formatting, plots
from sightline.studies import dataset as data_study
from sightline.studies import write_table

plots.setup()
wc = data.load_dataset(dataset)
summary = data_study.summarise(wc, generated=dataset["kind"] == "synthetic")
LABEL = wc.label_name

# %% [markdown]
# ## The regions table
# One row per expert region (its box relative to the image, clamped to [0, 1]; a mask
# region's box is the mask's bounding box and its area the mask's share of the image);
# written to `tables/boxes.csv`, the table every later count comes from.

# %%
for name, table in summary.tables().items():
    write_table(tables_dir, name, table)
display(Markdown(summary.sentence))
display(formatting.table(summary.reader))
if len(summary.clamped):  # each box clamped to its image; the build's console said one line
    display(Markdown(f"{len(summary.clamped)} boxes lie partly outside their image and were "
                     "clamped to it (`tables/clamped_boxes.csv`):"))
    display(formatting.table(summary.clamped))

# %% [markdown]
# ## Images and regions per label
# Per image label where the dataset has labels; regions per image shows how crowded the
# annotation is.

# %%
images = summary.images
palette = plots.STYLE_COLOURS if set(images[LABEL].dropna()) <= set(plots.STYLE_COLOURS) else None
fig, axes = plt.subplots(1, 1 + wc.has_labels, squeeze=False,
                         figsize=(plots.PAGE_WIDTH / (1 if wc.has_labels else 2), 3.0))
if wc.has_labels:
    display(formatting.table(summary.per_label, digits=2))
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
features = summary.features
fig, axes = plt.subplots(1, 2, figsize=(plots.PAGE_WIDTH + 1, max(3, 0.22 * len(features))))
sns.barplot(y=features.index, x=features["boxes"], ax=axes[0], color="#4c72b0")
axes[0].set_title("regions per feature type")
axes[0].set_ylabel("")
sns.histplot(summary.regions, x="area", hue=LABEL if wc.has_labels else None,
             palette=palette if wc.has_labels else None, log_scale=True, element="step", ax=axes[1])
axes[1].set_title("region area (fraction of image, log scale)")
fig.tight_layout()

# %% [markdown]
# ## Examples
# A few annotated images with their expert regions (the first images of each label, or
# the first images): boxes as drawn, masks as their bounding box over the mask itself.

# %%
examples = data_study.examples(images, LABEL, report["examples"])
by_id = {s.image_id: s for s in wc.samples}
rows = int(np.ceil(len(examples) / 4))
fig, axes = plt.subplots(rows, 4, figsize=(plots.PAGE_WIDTH, 2.0 * rows), squeeze=False,
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
