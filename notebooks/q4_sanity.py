# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (sightline)
#     language: python
#     name: python3
#   sightline:
#     needs: [q1_alignment]
#     requires: [randomisation]
# ---

# %% [markdown]
# # Q4: is the map about the model? The randomisation sanity check
# A map that overlaps the experts' boxes proves little if it would look the same with the
# model's weights scrambled. The model-parameter randomisation test of Adebayo et al.
# (*Sanity Checks for Saliency Maps*, NeurIPS 2018) re-initialises the weights **cascading
# from the top** — the classifier head, then the last block, ..., the first block, then
# the stem (patch / position embeddings, a CNN's first convolution) — and extracts every
# map again after each step; in the **independent** variant one unit at a time is
# re-initialised, the others kept. A method whose maps stay similar to the original after
# the whole network is re-initialised explains the input, not the model.
#
# Blocks are the transformer layers (one per attention tensor) or the CNN's stages.
# Re-initialisation: each module's own `reset_parameters()` (PyTorch's defaults), else a
# truncated normal with std 0.02; each unit is drawn from its own seed (`sanity.seed`
# and its position), so a unit gets the same random weights in both variants. Class-specific
# maps (Grad-CAM) keep explaining the class the original model predicted. Every
# randomised map is cached like every other map (a store per step; `tables/sanity_steps.csv`
# lists them with the seeds), so a rebuild recomputes nothing. The test ran in Q1, whose
# leaderboard carries the flag of the frozen weights when they were tested; this notebook
# reads its tables. The same test on real
# weights, the ImageNet EfficientNet-Lite0 with Grad-CAM and XRAI, is in the real-photos
# section (notebook 01_photos).
#
# Similarity of each map (head mean) to the original's, at `sanity.resolution`² after the
# same bilinear upsampling the scoring uses: **Spearman's rank correlation** of the maps
# and of their absolute values, and **SSIM** (scikit-image's definition: 7 × 7 uniform
# window, sample covariance) on maps **min-max scaled to [0, 1] per map** (data range 1;
# another normalisation gives other SSIM values). Mean over images with a 95% percentile
# bootstrap CI over images; a constant map (e.g. a Grad-CAM that the ReLU zeroes
# everywhere) has no rank correlation and is left out of that mean (`n` counts the rest).

# %% tags=["parameters"]
# The demo profile's values (a build injects its own); run here, tables go to report/demo/interactive/tables/.
from sightline.notebook_defaults import default

dataset = default("dataset")
models = default("models")
sanity = default("sanity")
seed = default("seed")
tables_dir = default("tables_dir")

# %%
from IPython.display import Markdown, display

from sightline import plots
from sightline.studies import Study
from sightline.studies import sanity as q4

plots.setup()
study = Study.from_sections(tables_dir, dataset=dataset, models=models, seed=seed)
tables = q4.SanityTables.read(study)

# %% [markdown]
# ## What was run
# One row per model and step: the units re-initialised, their seeds, and how many images
# were extracted in the build that made this report (0: read from the cache).

# %%
runs = q4.runs(tables.steps)
display(runs)
display(Markdown(q4.weights_sentence(runs, study.names, study.choices)))
display(Markdown(q4.cascade_sentence(tables.steps)))
display(Markdown(q4.absolute_gap_sentence(tables.summary)))

# %% [markdown]
# ## The classic figure: similarity against randomised depth
# One line per method, at the layer the flag reads (the method's layer whose maps stay most
# similar after the whole network is re-initialised); shaded: the 95% CI over images. Left
# of the grey line: the original model (similarity 1). Top: cascade; bottom: independent
# (one unit re-initialised at a time, others original). All layers are in `tables/sanity.csv`.

# %%
for mode in sanity["modes"]:
    plots.randomisation_curves(tables.summary, tables.flags, mode, sanity["threshold"])

# %% [markdown]
# ## Which methods pass
# After the whole network is re-initialised (the deepest cascade step): per model and
# method, the layer whose maps stay most similar, its mean Spearman correlation with the
# original maps and 95% CI, and the flag: **not model-sensitive** when the mean exceeds
# `sanity.threshold`. Where the frozen weights were tested, Q1's leaderboard shows the same
# flag beside each model and method.

# %%
verdicts = q4.verdicts(tables.flags)
display(verdicts.round(3))
display(Markdown(q4.flagged_sentence(verdicts, sanity["threshold"])))
if rebounds := q4.rebounds_sentence(q4.rebounds(tables.summary, tables.flags, sanity["threshold"])):
    display(Markdown(rebounds))
display(Markdown("Every layer, after the whole network is re-initialised (mean Spearman):"))
display(q4.after_full_randomisation(tables.summary))

# %% [markdown]
# ## One image through the cascade
# The first tested image: each method's map (at the flag's layer) in the model's input
# frame, for the original model and after each cascade step.

# %%
q4.cascade_gallery(study, tables)
