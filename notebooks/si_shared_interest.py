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
# # SI: do saliency maps overlap where people looked? (a Shared Interest replication)
# "Shared Interest...Sometimes" (Morrison, Mehra & Perer, CVPR Workshops 2023) asked
# whether two attention-based classifiers (Swin-T, CaiT-S) and two CNNs (ResNet-101,
# EfficientNet-B6) explain ImageNet images where humans look, with two saliency
# techniques: **Grad-CAM** (at one late layer) and **XRAI** (integrated gradients ranked over
# image segments). The ground truth is the human-attention masks of the ML Interpretability
# Benchmark (Mohseni et al.): 100 images of 20 subjects, each mask weighted by how many of
# 10 annotators marked a pixel. Each map is scored with the Shared Interest metrics
# (Boggust et al., CHI 2022): **IoU**, **ground-truth coverage** GTC = |S∩G| / |G| and
# **saliency coverage** SC = |S∩G| / |S| of the binarised saliency S and human mask G.
#
# Both techniques explain the model's **predicted** class (`target: predicted`; the
# benchmark's own class is `target: benchmark`). The paper's text available to us does not
# state its target; the predicted class is the default of both libraries it names, and the
# choice here.
#
# **Binarisation is our choice.** The study does not publish its rule. Both the human mask
# and the saliency are binarised with the Shared Interest code's `binarize_std`: min-max
# each map, keep the pixels >= mean + 1 std (ties kept). The masks are lossy JPEGs, so
# `> 0` would keep compression noise. A percentile rule and a sweep of the saliency
# threshold are parameters; the sweep is shown below.

# %% tags=["parameters"]
# The demo profile's values (a build injects its own); run here, tables go to report/demo/interactive/tables/.
from sightline.notebook_defaults import default

shared_interest = default("shared_interest")
extraction = default("extraction")
stats = default("stats")
report = default("report")
seed = default("seed")
tables_dir = default("tables_dir")

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from sightline import formatting, plots
from sightline import stats as st
from sightline.studies import Study
from sightline.studies import shared_interest as si

plots.setup()
study = Study.from_sections(tables_dir, shared_interest=shared_interest, extraction=extraction,
                            stats=stats, report=report, seed=seed)
replication = si.Replication.of(study)
display(Markdown(replication.description()))
plots.random_weights_banner(replication.section.models)

# %% [markdown]
# ## Maps and predictions
# Maps go through the project's one map cache (a store per model and XRAI setting); each
# model's top-1 ImageNet class, from the forward pass of its maps, is kept in the store. A
# prediction is **correct** when it is one of the subject's ImageNet classes
# (`imagenet_subjects.csv`: e.g. `dog` = the 118 dog breeds; `tree` has no class, so its
# correctness is undefined).

# %%
predictions = replication.predictions()
study.write_table("si_predictions.csv", predictions)
display(formatting.table(si.accuracy(predictions, len(replication.samples))))
display(Markdown(si.agreement_note(predictions)))

# %% [markdown]
# ### What XRAI costs on this CPU
# One image per model at this profile's XRAI settings (2 baselines x steps integrated-
# gradient evaluations, segmentation, region ranking), beside one Grad-CAM, timed on this
# machine when the cache was filled (and kept beside the maps, so a rebuild shows the same
# measurement). At full size and the paper's defaults (100 steps, full ranking) see
# `python build.py bench` (`benchmarks/bench_shared_interest.py`) and docs/benchmarks.md.

# %%
display(formatting.table(replication.timing(), digits=2))

# %% [markdown]
# ## Scores
# Every map is upsampled to the working resolution in its model's input frame (the human
# mask goes through the same resize / crop), binarised, and scored; rows land in
# `tables/si_scores.parquet` in the project's scores schema (`target` = `human`,
# `feature` = subject, `threshold` = the saliency threshold; `coverage` is the continuous
# SC; `correct`: the prediction is one of the subject's classes, empty where the subject has
# none). Its columns are those of `scores.parquet`, so the same readers work on it.

# %%
scores = replication.scores(predictions)
study.write_table("si_scores.parquet", scores)
wide = replication.headline(scores, predictions)
display(Markdown(si.missing_note(scores, wide)))

# %% [markdown]
# ## Table 1: ours beside the paper's
# Mean IoU / SC / GTC per technique and model at the headline threshold.

# %%
ours = si.table1(wide, replication.names)
study.write_table("si_table1.csv", ours.round(3))
display(formatting.table(ours.drop(columns="key")))

# %% [markdown]
# ### Table 1 by right and wrong predictions
# With `report.split_by_correct`: the same means on the images each model classifies right
# and on those it gets wrong (images whose subject has no ImageNet class are on neither
# side), with the two-sided Mann–Whitney U test of IoU between the two sets of images. A side
# with fewer than 10 images is reported (its means) but not tested.

# %%
if report["split_by_correct"]:
    table1_by_correct = si.table1_by_correct(wide, replication.names)
    study.write_table("si_table1_by_correct.csv", table1_by_correct)
    display(formatting.table(table1_by_correct, digits=3, caption=(
        "n: images with an IoU score on each side; p: Mann–Whitney U of IoU, right vs wrong, "
        f"only where both sides have {st.MIN_SIDE} images or more.")))
else:
    display(Markdown("Not split (`report.split_by_correct` is off)."))

# %% [markdown]
# ## Distributions
# IoU, GTC and SC per image, by model and technique.

# %%
si.distributions(wide)
plt.show()

# %% [markdown]
# ### Threshold sweep
# Mean IoU as the saliency threshold moves (the human mask stays at its threshold): the
# ranking of models and techniques at the headline threshold is checked against it here.

# %%
si.threshold_sweep(scores, replication.rule[0])
plt.show()

# %% [markdown]
# ## Tests
# - **Technique** (Grad-CAM vs XRAI, IoU): each Grad-CAM map has an XRAI twin on the same
#   image and model, so the **paired t-test** over (image, model) pairs is the right test,
#   with its effect size **Cohen's d_z** = mean / sd of the per-pair differences
#   Grad-CAM − XRAI (signed like t; t = d_z √n); **Welch's t-test** treats the two sets as
#   independent, as a comparison of two means like the paper's does, and is given for
#   comparison, with Cohen's d on the pooled sd (same sign convention).
# - **Model**, per technique: one-way ANOVA and Tukey HSD, as the paper (between-groups;
#   the images repeat across models, so it ignores that pairing, like the paper).
# - **Technique x model**: two-way ANOVA with interaction; effect sizes are partial eta².
# The same on the subset of images where all models predict the same class.

# %%
tests = si.tests(wide)
study.write_table("si_tests.csv", tests)
display(formatting.table(tests.drop(columns=["mean_a", "mean_b"], errors="ignore"), digits=4))

# %% [markdown]
# ## Best and worst images per model
# Each model's best and worst image by IoU (mean of the techniques), with the human mask
# (white outline: its binarised region) and both maps.

# %%
si.best_and_worst(replication, wide)
plt.show()

# %% [markdown]
# ## Shared Interest cases
# Each (image, model, technique) gets a case of the Shared Interest taxonomy from its
# IoU, SC and GTC and whether the prediction is correct: **human aligned** (high IoU, or
# both coverages high) / **confuser** if wrong; **sufficient subset** (high SC, low GTC:
# the saliency lies inside the human region but covers only part of it) / *insufficient
# subset*; **sufficient context** (high GTC, low SC: the human region and more) / *context
# confusion*; **context dependent** (both low: mostly elsewhere) / *distractor*. "High"
# means >= the `cases` thresholds (IoU >= 0.5, coverage >= 0.5 by default): Boggust et al.
# define the cases by these score regions; the cut-off values are ours, as parameters.

# %%
wide = replication.with_cases(wide)
cases = si.case_table(wide)
study.write_table("si_cases.csv", cases.reset_index())
display(formatting.table(cases))

# %%
si.case_examples(replication, wide)
plt.show()

# %% [markdown]
# ## The paper beside ours
# The paper's Table 1 (mean IoU / SC / GTC, 100 images) next to ours, and its headline
# test: mean IoU of Grad-CAM (0.192) vs XRAI (0.145), t-test p < 0.001.

# %%
display(formatting.table(ours[["method", "model", "iou_paper", "iou", "sc_paper", "sc",
                               "gtc_paper", "gtc"]]))
display(Markdown(si.paper_summary(ours, wide, tests, replication)))
