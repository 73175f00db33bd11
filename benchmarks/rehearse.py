"""A rehearsal of the real WikiChurches profile at its real size, on this machine.

Writes a folder in WikiChurches' on-disk format at the annotated scale (139 photo-sized
images, 1280-1920 px wide, with EXIF-rotated JPEGs, PNGs and the wc4 split files; the pool
size is ``--pool``), then runs each stage of `params/wikichurches.yaml` on it with the presets'
full-size architectures and random weights (offline) and times it per model: reading the
data, decoding the pool to training frames (against decoding each image every epoch, the
loader before frames files), the linear probe, a LoRA and a full fine-tuning run of
``--steps`` steps, map extraction (every method, layer and head), scoring, and the
randomisation test over ``--sanity-images`` images. It writes `rehearsal.csv` (stage, model,
images, seconds, images/s, peak resident memory) and `rehearsal.md`: that table and the real
profile's budget projected from these rates on this machine, and on one GPU at the rates given
by ``--gpu-rates`` (assumed, not measured, unless you measured them there).

    python benchmarks/rehearse.py [--quick] [--pool 300] [--models clip,resnet50_tv]
        [--steps 4] [--sanity-images 4] [--out rehearsal] [--docs docs/rehearsal.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import torch
from PIL import Image

from sightline import config, data, extract, frames, registry, sanity, scoring, synthetic
from sightline import finetune as ft

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "params" / "wikichurches.yaml"
# The real profile's counts: 139 annotated images; ~4,835 training and ~1,209 validation
# images per run (wc4 train + val, annotated ones out, val_fraction 0.2); 10 epochs; runs per
# model from its strategies x 3 seeds; randomisation steps per model (its depths + the
# original), both modes.
ANNOTATED, TRAIN, VAL, EPOCHS, SEEDS = 139, 4835, 1209, 10, 3
# Images/s on one GPU for a ViT-B (float32), per stage: assumptions to replace with measured
# rates (--gpu-rates stage=rate,...), printed as such.
GPU_RATES = {"decode": 800.0, "probe": 1500.0, "lora": 450.0, "full": 300.0, "extract": 400.0,
             "score": 150.0, "sanity": 400.0}


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def write_folder(root: Path, pool: int, seed: int = 0) -> Path:
    """The rehearsal data: synthetic façades at photo size, 4 annotated images re-saved as
    EXIF-rotated JPEGs and 3 as PNGs (their annotations renamed), no generator manifest."""
    if (root / "building_parts.json").is_file():
        return root
    synthetic.make_synthetic(root, n_annotated=ANNOTATED, n_pool=pool, seed=seed,
                             image_size=(1600, 1200))
    (root / data.MANIFEST).unlink()
    parts = json.loads((root / "building_parts.json").read_text())
    names = sorted(parts["annotations"])
    for name in names[:4]:  # stored sideways, read upright through the EXIF orientation
        path = root / "images" / name
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.open(path).transpose(Image.Transpose.ROTATE_90).save(path, quality=90, exif=exif)
    for name in names[4:7]:
        png = Path(name).with_suffix(".png").name
        Image.open(root / "images" / name).save(root / "images" / png)
        (root / "images" / name).unlink()
        parts["annotations"][png] = parts["annotations"].pop(name)
    (root / "building_parts.json").write_text(json.dumps(parts))
    return root


class Timer:
    """Rows of (stage, model, images, seconds, images/s, peak GiB), one per timed stage."""

    def __init__(self):
        self.rows: list[dict] = []

    @contextmanager
    def stage(self, stage: str, model: str, images: int):
        """Time the block; it may set ``row["images"]`` when the count is known only after."""
        row = {"stage": stage, "model": model, "images": images}
        started = time.perf_counter()
        yield row
        seconds = time.perf_counter() - started
        row.update(seconds=round(seconds, 2), images_per_s=round(row["images"] / seconds, 2),
                   peak_rss_gib=round(_peak_gib(), 2))
        self.rows.append(row)
        print(f"[rehearse] {stage:12s} {model:24s} {row['images']:5d} images "
              f"{seconds:8.1f} s", flush=True)


def rehearse(args: argparse.Namespace) -> pd.DataFrame:
    out = Path(args.out)
    root = write_folder(out / "wikichurches", args.pool)
    params = config.load_params(REAL, base=ROOT)
    section = params.dataset.model_copy(update={"root": root}).model_dump(mode="json")
    recipe = params.finetune.model_copy(update={
        "epochs": 1, "patience": 0, "device": "cpu", "num_workers": args.workers,
        "checkpoint_dir": out / "checkpoints"})
    resolution, batch = params.metrics.resolution, params.extraction.batch_size
    timer = Timer()
    with timer.stage("read", "-", ANNOTATED):
        wc = data.load_dataset(section)
    samples = wc.samples[:args.images]
    dataset_id = data.dataset_fingerprint(section)
    split = ft.make_split(wc, dataset_id, 0, recipe.val_fraction)
    short = ft.Split(split.dataset_id, split.seed, split.val_fraction,
                     split.train[: args.steps * recipe.batch_size], split.val[: recipe.batch_size])
    paths = [p for _, p, _ in (*split.train, *split.val)]
    for choice in params.models:
        if args.models and choice.key not in args.models:
            continue
        choice = choice.model_copy(update={"weights": "random"})
        name = extract.model_name(choice)
        model = extract.load_for(choice, None, seed=0, device="cpu")
        geometry = model.spec.geometry
        with timer.stage("decode-each", name, min(32, len(paths))):  # the loader before frames
            [frames.frame_pixels(p, geometry.transform()) for p in paths[:32]]
        with timer.stage("decode", name, len(paths)):
            stored = frames.ensure_frames(out / "frames", paths, geometry,
                                          workers=args.workers, progress=False)
        frame_set = frames.FrameSet(stored, paths, split.train, lambda x: x)
        with timer.stage("frames", name, len(frame_set)):  # each later epoch's reading
            [frame_set[i] for i in range(len(frame_set))]
        for strategy in params.finetune.strategies.get(choice.key, ()):
            items = split if strategy == "linear_probe" else short
            with timer.stage(strategy, name, len(items.train) + len(items.val)):
                ft.train_run(choice, strategy, 0, items, recipe, recipe.checkpoint_dir,
                             progress=False)
        store = extract.store_for(out / "cache", dataset_id, name, "rehearsal")
        methods = None if model.spec.arch.classifier else tuple(  # no probe: no class logit
            m for m in model.spec.methods if not registry.METHODS[m].explains_class)
        with timer.stage("extract", name, len(samples)):
            extract.extract_model(samples, choice, store, batch_size=batch, device="cpu",
                                  progress=False, methods=methods)
        with timer.stage("score", name, len(samples)):
            scoring.score_store(store, scoring.build_targets(samples, geometry, resolution),
                                model=name, variant="rehearsal",
                                percentiles=params.metrics.percentiles, resolution=resolution,
                                progress=False)
        with timer.stage("sanity", name, 0) as row:  # image-steps extracted
            result = sanity.randomisation_test(
                model, samples[: args.sanity_images], cache_dir=out / "cache",
                dataset_id=dataset_id, name=name, variant="rehearsal", methods=methods,
                depths="all", modes=("cascade",), seed=0, resolution=resolution,
                batch_size=batch)
            row["images"] = int(result.steps["extracted"].sum())
    return pd.DataFrame(timer.rows)


def project(table: pd.DataFrame, params: config.Params, gpu_rates: dict[str, float]) -> pd.DataFrame:
    """The real profile's work per stage (images or image-steps) and its time at the measured
    CPU rates and the given GPU rates."""
    rates = table.groupby("stage")["images_per_s"].median()
    n_models = len(params.models)
    runs = {s: sum(s in v for v in params.finetune.strategies.values()) * SEEDS
            for s in ("linear_probe", "lora", "full")}
    work = {
        "decode": (TRAIN + VAL) * n_models,
        "probe": (TRAIN + VAL) * runs["linear_probe"],
        "lora": (TRAIN + VAL) * EPOCHS * runs["lora"],
        "full": (TRAIN + VAL) * EPOCHS * runs["full"],
        "extract": ANNOTATED * (n_models + runs["lora"] + runs["full"]),
        "score": ANNOTATED * (n_models + runs["lora"] + runs["full"]),
        "sanity": ANNOTATED * n_models * 2 * 14,
    }
    measured = {"probe": "linear_probe"}
    rows = []
    for stage, images in work.items():
        rate = rates.get(measured.get(stage, stage))
        rows.append({"stage": stage, "work (images)": images,
                     "cpu rate (img/s)": rate, "cpu hours": images / rate / 3600 if rate else None,
                     "gpu rate (img/s, assumed)": gpu_rates[stage],
                     "gpu hours": images / gpu_rates[stage] / 3600})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2 models, 12 images, an 80-image pool")
    parser.add_argument("--pool", type=int, default=300)
    parser.add_argument("--images", type=int, default=ANNOTATED)
    parser.add_argument("--models", default="")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--sanity-images", type=int, default=4)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--gpu-rates", default="")
    parser.add_argument("--out", default=str(ROOT / "rehearsal"))
    parser.add_argument("--docs", default="")
    args = parser.parse_args()
    if args.quick:
        args.pool, args.images, args.steps, args.sanity_images = 80, 12, 1, 2
        args.models = args.models or "clip,resnet50_tv"
    args.models = tuple(m for m in args.models.split(",") if m)
    gpu_rates = {**GPU_RATES, **{k: float(v) for k, v in
                                 (kv.split("=") for kv in args.gpu_rates.split(",") if kv)}}
    torch.manual_seed(0)
    np.random.seed(0)
    table = rehearse(args)
    out = Path(args.out)
    table.to_csv(out / "rehearsal.csv", index=False)
    budget = project(table, config.load_params(REAL, base=ROOT), gpu_rates)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    text = (f"# Rehearsal of the real profile\n\nGenerated by `python benchmarks/rehearse.py "
            f"{' '.join(sys.argv[1:])}` on {platform.node()} ({os.cpu_count()} cores, load "
            f"average {load} at the end, {time.strftime('%Y-%m-%d')}): do not edit by hand. "
            "Rates are images (or, for sanity, image-steps) per second of wall time, model "
            "building included; `decode-each` is the training loader before frames files "
            "(every image decoded every epoch), `frames` reading a decoded frames file. The "
            "GPU column multiplies the real profile's work by assumed rates (`--gpu-rates`), "
            "not by anything measured here.\n\n## Measured\n\n"
            f"{table.to_markdown(index=False)}\n\n## The real profile, projected\n\n"
            f"{budget.to_markdown(index=False, floatfmt='.2f')}\n")
    (out / "rehearsal.md").write_text(text)
    if args.docs:
        Path(args.docs).write_text(text)
    print(text)
    shutil.rmtree(out / "cache", ignore_errors=True)


if __name__ == "__main__":
    main()
