# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (sightline)
#     language: python
#     name: python3
#   sightline:
#     needs: [q1_alignment]
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
# Defaults: the demo profile (params/demo.yaml), paths from the project root, so this
# notebook runs as is in JupyterLab once `python build.py` has made the demo data; a
# build injects its own profile's values after this cell. Run here, the notebook writes its
# tables to report/demo/interactive/tables/ (set tables_dir to change it): the build's
# report/demo/tables/, which the report and the explorer read, stays as the build made it.
from sightline.project import default

dataset = default("dataset")
models = default("models")
sanity = default("sanity")
seed = default("seed")
tables_dir = default("tables_dir")

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from sightline import cache, data, extract, plots
from sightline import models as registry
from sightline.config import ModelChoice

plots.setup()
tables = Path(tables_dir)
summary = pd.read_csv(tables / "sanity.csv")
flags = pd.read_csv(tables / "sanity_flags.csv")
steps = pd.read_csv(tables / "sanity_steps.csv") if len(flags) else pd.DataFrame()
tested = len(flags) > 0
spec_of = {m["key"]: registry.spec_for(ModelChoice(**m)) for m in models}
if not tested:
    display(Markdown("**No model in `sanity.models`: the randomisation test did not run.**"))

# %% [markdown]
# ## What was run
# One row per model and step: the units re-initialised, their seeds, and how many images
# were extracted in the build that made this report (0: read from the cache).

# %%
if tested:
    runs = steps.groupby(["model", "variant", "mode"]).agg(
        steps=("depth", "size"), images=("images", "first"), seed=("seed", "first"),
        extracted_now=("extracted", "sum")).reset_index()
    display(runs)
    weights_of = {extract.model_name(ModelChoice(**m)): m.get("weights", "pretrained")
                  for m in models}
    display(Markdown("Weights tested: " + "; ".join(
        f"**{m}** " + (f"frozen ({weights_of.get(m, '?')} weights)" if v == "frozen" else
                       f"{v}: Q2's fine-tuning run, started from {weights_of.get(m, '?')} "
                       "weights and trained on this profile's data")
        for m, v in runs[["model", "variant"]].drop_duplicates().itertuples(index=False))
        + ". The verdicts below are about these weights."))
    order = steps[steps["mode"] == "cascade"].sort_values("depth")
    display(Markdown("Cascade order: " + "; ".join(
        f"**{m}** ({v}): " + " → ".join(rows["unit"])
        for (m, v), rows in order.groupby(["model", "variant"]))))
    both = summary[summary["metric"].isin(["spearman", "spearman_abs"])].pivot_table(
        index=["model", "variant", "mode", "depth", "method", "layer"], columns="metric",
        values="mean")
    gap = (both["spearman"] - both["spearman_abs"]).abs().max()
    display(Markdown(
        "Spearman of the maps and of their absolute values "
        + ("coincide on every map (the maps are non-negative), so only the first is drawn."
           if gap == 0 or np.isnan(gap) else f"differ by up to {gap:.3g}.")))

# %% [markdown]
# ## The classic figure: similarity against randomised depth
# One line per method, at the layer the flag reads (the method's layer whose maps stay most
# similar after the whole network is re-initialised); shaded: the 95% CI over images. Left
# of the grey line: the original model (similarity 1). Top: cascade; bottom: independent
# (one unit re-initialised at a time, others original). All layers are in `tables/sanity.csv`.

# %%
if tested:
    for mode in sanity["modes"]:
        plots.randomisation_curves(summary, flags, mode, sanity["threshold"])

# %% [markdown]
# ## Which methods pass
# After the whole network is re-initialised (the deepest cascade step): per model and
# method, the layer whose maps stay most similar, its mean Spearman correlation with the
# original maps and 95% CI, and the flag: **not model-sensitive** when the mean exceeds
# `sanity.threshold`. Where the frozen weights were tested, Q1's leaderboard shows the same
# flag beside each model and method.

# %%
if tested:
    verdicts = flags.assign(verdict=np.where(flags["not_model_sensitive"],
                                             "not model-sensitive", "model-sensitive"))
    display(verdicts.round(3))
    failed = verdicts[verdicts["not_model_sensitive"]]
    display(Markdown(
        f"Threshold {sanity['threshold']:g}: "
        + (", ".join(f"**{r.model} · {r.method}** (Spearman {r.mean:.2f} at layer {r.layer})"
                     for r in failed.itertuples()) + " stay similar to the original maps: "
           "they are flagged not model-sensitive." if len(failed) else
           "every method's maps change when the network is re-initialised.")))
    full = summary[(summary["mode"] == "cascade") & (summary["metric"] == "spearman")]
    full = full[full["depth"] == full.groupby(["model", "variant"])["depth"].transform("max")]
    # a curve that falls below the threshold and climbs back above it as more is randomised
    curves = summary[(summary["mode"] == "cascade") & (summary["metric"] == "spearman")
                     & (summary["depth"] > 0)].merge(flags[["model", "variant", "method", "layer"]])
    rebounds = []
    for (m, v, method, layer), curve in curves.groupby(["model", "variant", "method", "layer"]):
        curve = curve.sort_values("depth")
        low = curve["mean"].idxmin()
        later = curve.loc[curve["depth"] > curve.loc[low, "depth"]]
        if curve.loc[low, "mean"] < sanity["threshold"] and (later["mean"] > sanity["threshold"]).any():
            high = later["mean"].idxmax()
            rebounds.append(f"{m} {v} · {method} (layer {layer}) falls to {curve.loc[low, 'mean']:.2f} "
                            f"after {curve.loc[low, 'unit']} and climbs back to "
                            f"{curve.loc[high, 'mean']:.2f} after {curve.loc[high, 'unit']}")
    if rebounds:
        display(Markdown(
            "The flag reads only the last step; on the way there, " + "; ".join(rebounds)
            + ": similarity that returns as more of the network is randomised points to "
              "something the remaining weights do not control (e.g. the input or the "
              "architecture's position handling), worth a look in the figure above."))
    display(Markdown("Every layer, after the whole network is re-initialised (mean Spearman):"))
    display(full.pivot_table(index=["model", "method"], columns="layer", values="mean").round(3))

# %% [markdown]
# ## One image through the cascade
# The first tested image: each method's map (at the flag's layer) in the model's input
# frame, for the original model and after each cascade step.

# %%
if tested:
    by_id = {s.image_id: s for s in data.load_dataset(dataset).samples}
    cascade_steps = steps[steps["mode"].isin(["original", "cascade"])].sort_values("depth")
    for (model, variant), rows in cascade_steps.groupby(["model", "variant"]):
        picked = flags[(flags["model"] == model) & (flags["variant"] == variant)]
        original = cache.MapStore(rows["store"].iloc[0])
        image_id = sorted(original.image_ids())[0]
        frame = spec_of[rows["key"].iloc[0]].geometry.frame_image(
            data.load_image(by_id[image_id].path))
        side = frame.size[0]
        fig, axes = plt.subplots(len(picked), len(rows), squeeze=False,
                                 figsize=(1.8 * len(rows), 1.9 * len(picked)))
        for r, flag in enumerate(picked.itertuples()):
            for c, step in enumerate(rows.itertuples()):
                store = cache.MapStore(step.store)
                grid = store.read_image(flag.method, int(flag.layer), image_id)[-1]
                ax = axes[r, c]
                ax.imshow(frame)
                ax.imshow(grid, cmap="inferno", alpha=0.6, extent=(0, side, side, 0),
                          interpolation="bilinear")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(step.unit, fontsize=8)
                if c == 0:
                    ax.set_ylabel(f"{flag.method} L{flag.layer}", fontsize=8)
        fig.suptitle(f"{model} · {variant}: image {image_id}, cascade →", y=1.0, fontsize=9)
        fig.tight_layout()
