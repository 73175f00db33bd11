"""A rehearsal of the real WikiChurches profile at its real size, on this machine.

Writes a folder in WikiChurches' on-disk format (139 photo-sized annotated images with
EXIF-rotated JPEGs and PNGs, a pool of ``--pool``), runs each stage of
`params/wikichurches.yaml` on it with the presets' full-size architectures and random weights,
and times it per model: reading, decoding the pool to frames (against decoding each image
every epoch), probe / LoRA / full training of ``--steps`` steps, extraction, scoring and the
randomisation test. Writes `rehearsal.csv` and `rehearsal.md`: the table and the real profile's
budget projected on this machine and on one GPU at the rates of ``--gpu-rates`` (assumed).

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
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import torch
import torchvision.transforms.v2 as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from sightline import config, data, extract, frames, models, sanity, scoring, synthetic
from sightline import finetune as ft

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "params" / "wikichurches.yaml"
# The real profile's counts: 139 annotated images; ~4,835 training and ~1,209 validation
# images per run (wc4 train + val, annotated ones out, val_fraction 0.2); 10 epochs; runs per
# model from its strategies x 3 seeds; randomisation steps per model (its depths + the
# original), both modes.
ANNOTATED, TRAIN, VAL, EPOCHS, SEEDS = 139, 4835, 1209, 10, 3
CORES = os.cpu_count() or 1
# Images/s on one GPU per stage: assumptions to replace with measured rates (--gpu-rates
# stage=rate,...), printed as such. Training runs under bf16 autocast on a GPU
# (sightline.finetune), so `full` is timm's published AMP training rate of ViT-B/16 at 224 on
# an RTX 3090 (391 images/s: results/benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv), a
# floor for a data-centre GPU, and `lora` 1.5 times that (no weight gradients: about a third
# of a step's work). Maps (extract, sanity) are float32. Scoring runs on the host's CPU, one
# store per worker (execution.engine: processes or ray): unless given, its rate there is one
# core's, measured here (images per CPU second), times the host's cores (--host-cores; 16 on
# the lent H100 machine).
GPU_RATES = {"decode": 800.0, "linear_probe": 1500.0, "lora": 586.0, "full": 391.0,
             "extract": 100.0, "sanity": 100.0}
TURN_DOWN = {
    "decode": "the pool (dataset.pool)", "linear_probe": "finetune.seeds, the pool",
    "lora": "finetune.seeds, finetune.epochs (patience stops early), the pool",
    "full": "finetune.seeds, finetune.epochs (patience stops early), the pool",
    "extract": "models, the methods; Q2's runs (seeds x strategies)",
    "score": "metrics.rules, metrics.percentiles; Q2's runs",
    "sanity": "sanity.depths, sanity.modes, sanity.max_images, sanity.models",
}

WHY = {  # what makes a stage long, for the page's verdict
    "decode": "decodes each pool image once per model geometry",
    "linear_probe": "runs every training image through the frozen model once per seed",
    "lora": f"runs every training image forward and backward once per epoch: {EPOCHS} epochs x "
            f"{SEEDS} seeds x every ViT",
    "full": f"runs every training image forward and backward once per epoch: {EPOCHS} epochs x "
            f"{SEEDS} seeds x every model",
    "extract": "computes every method at every layer and head for the frozen model and each run",
    "score": "runs on the host's CPU, one store per worker: every map of every layer, head "
             "and method against each image's union and boxes, at every percentile and rule "
             "(sightline.scoring); it does not use the GPU, so more host cores (workers) "
             "or fewer rules shorten it",
    "sanity": "extracts every method again at every depth in both modes",
}


def _peak_gib(who: int) -> float:
    """Peak resident memory of this process (``RUSAGE_SELF``) or of its largest finished
    child (``RUSAGE_CHILDREN``: loader workers), in GiB."""
    return resource.getrusage(who).ru_maxrss / 2**20


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (loader workers), in seconds."""
    return sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (
        resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))


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


@dataclass
class Timer:
    """Rows of (stage, model, images, seconds, images/s, peak GiB), one per timed stage,
    written to ``csv`` as each stage ends (an interrupted run keeps what it measured)."""

    csv: Path
    rows: list[dict] = field(default_factory=list)

    @contextmanager
    def stage(self, stage: str, model: str, images: int):
        """Time the block; it may set ``row["images"]`` when the count is known only after."""
        row = {"stage": stage, "model": model, "images": images}
        started, cpu = time.perf_counter(), _cpu_seconds()
        yield row
        seconds = time.perf_counter() - started
        row.update(seconds=round(seconds, 2), images_per_s=round(row["images"] / seconds, 2),
                   cpu_seconds=round(_cpu_seconds() - cpu, 2),
                   peak_rss_gib=round(_peak_gib(resource.RUSAGE_SELF), 2),
                   worker_peak_rss_gib=round(_peak_gib(resource.RUSAGE_CHILDREN), 2))
        self.rows.append(row)
        pd.DataFrame(self.rows).to_csv(self.csv, index=False)
        print(f"[rehearse] {stage:14s} {model:24s} {row['images']:5d} images "
              f"{seconds:8.1f} s", flush=True)


class DecodeEach(Dataset):
    """The training loader before frames files: each image decoded, framed and cropped every
    time it is read."""

    def __init__(self, items: Sequence[frames.Item], geometry, crop):
        self.items, self.frame, self.crop = list(items), geometry.transform(), crop

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        _, path, label = self.items[index]
        return self.crop(torch.from_numpy(frames.frame_pixels(path, self.frame))), label


def epoch(dataset: Dataset, batch: int, workers: int) -> None:
    """One shuffled pass of a training loader over ``dataset`` (workers started anew)."""
    for _ in DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers):
        pass


def rehearse(args: argparse.Namespace) -> pd.DataFrame:
    out = Path(args.out)
    root = write_folder(out / "wikichurches", args.pool)
    params = config.load_params(REAL, base=ROOT)
    section = params.dataset.model_copy(update={"root": root}).model_dump(mode="json")
    recipe = params.finetune.model_copy(update={
        "epochs": 1, "patience": 0, "device": "cpu", "num_workers": args.workers,
        "checkpoint_dir": out / "checkpoints"})
    resolution, batch = params.metrics.resolution, params.extraction.batch_size
    timer = Timer(out / "rehearsal.csv")
    with timer.stage("read", "-", ANNOTATED):
        wc = data.load_dataset(section)
    samples = wc.samples[:args.images]
    dataset_id = data.dataset_fingerprint(section)
    split = ft.make_split(wc, dataset_id, 0, recipe.val_fraction)
    short = ft.Split(split.dataset_id, split.seed, split.val_fraction,
                     split.train[: args.steps * recipe.batch_size], split.val[: recipe.batch_size])
    chosen = {c.key: c for c in params.models}
    for key in args.models or list(chosen):
        choice = chosen[key].model_copy(update={"weights": "random"})
        name, geometry = extract.model_name(choice), models.spec_for(choice).geometry
        runs = {}
        if "train" in args.stages:
            train_stages(timer, args, choice, params.finetune.strategies.get(key, ()), split,
                         short, recipe, out, runs)
        else:  # a probe of a few images, untimed: the head the frozen maps explain
            runs["linear_probe"] = ft.train_run(choice, "linear_probe", 0, short, recipe,
                                                recipe.checkpoint_dir, progress=False)
        if "maps" not in args.stages:
            continue
        probe = Path(runs["linear_probe"]["dir"])  # the frozen maps explain its style logit
        store = extract.store_for(out / "cache", dataset_id, name, "rehearsal")
        with timer.stage("extract", name, len(samples)):
            extract.extract_models(samples, [extract.MapJob(choice, store, None, probe)],
                                   batch_size=batch, device="cpu", progress=False)
        with timer.stage("score", name, len(samples)):
            scoring.score_store(store, scoring.build_targets(samples, geometry, resolution),
                                model=name, variant="rehearsal",
                                percentiles=params.metrics.percentiles, resolution=resolution,
                                rules=params.metrics.rules, progress=False)
        model = extract.load_for(choice, probe, seed=0, device="cpu")
        with timer.stage("sanity", name, 0) as row:  # image-steps extracted
            result = sanity.randomisation_test(
                model, samples[: args.sanity_images], cache_dir=out / "cache",
                dataset_id=dataset_id, name=name, variant="rehearsal", depths="all",
                modes=("cascade",), seed=0, resolution=params.sanity.resolution,
                batch_size=batch)
            row["images"] = int(result.steps["extracted"].sum())
            row["units"] = int(result.steps["depth"].max())
        del model
    return pd.DataFrame(timer.rows)


def train_stages(timer: Timer, args: argparse.Namespace, choice, strategies: Sequence[str],
                 split: ft.Split, short: ft.Split, recipe, out: Path, runs: dict) -> None:
    """Decoding the pool to frames, one epoch of each training loader, and each strategy's
    run (the probe over the whole split, LoRA and full over ``short``) into ``runs``."""
    name, geometry = extract.model_name(choice), models.spec_for(choice).geometry
    paths = [p for _, p, _ in (*split.train, *split.val)]
    with timer.stage("decode", name, len(paths)):
        stored = frames.ensure_frames(out / "frames", paths, geometry, workers=args.workers,
                                      progress=False)
    crop = T.RandomResizedCrop(geometry.size, scale=tuple(recipe.crop_scale), antialias=True)
    each = split.train[:args.loader_images]
    with timer.stage("loader-decode", name, len(each)):
        epoch(DecodeEach(each, geometry, crop), recipe.batch_size, args.workers)
    with timer.stage("loader-frames", name, len(split.train)):
        epoch(frames.FrameSet(stored, paths, split.train, crop), recipe.batch_size, args.workers)
    for strategy in strategies:
        items = split if strategy == "linear_probe" else short
        with timer.stage(strategy, name, len(items.train) + len(items.val)):
            runs[strategy] = ft.train_run(choice, strategy, 0, items, recipe,
                                          recipe.checkpoint_dir, progress=False)


def _family(choice: config.ModelChoice) -> str:
    return "ViT" if hasattr(models.spec_for(choice).arch, "blocks") else "CNN"


def _random_name(choice: config.ModelChoice) -> str:
    return extract.model_name(choice.model_copy(update={"weights": "random"}))


def project(table: pd.DataFrame, params: config.Params, gpu_rates: dict[str, float],
            host_cores: int) -> tuple[pd.DataFrame, list[str]]:
    """The real profile's work per stage (images or image-steps), and its time at the CPU
    rates measured here and at the given GPU rates, summed over the profile's models. A
    model the rehearsal did not run takes the median rate of the measured models of its
    family (ViT-B or CNN); the notes say which."""
    measured = table[table["model"] != "-"]
    family = {_random_name(c): _family(c) for c in params.models}
    measured = measured.assign(family=measured["model"].map(family),
                               units=measured.get("units", np.nan))
    units = measured.dropna(subset=["units"])
    totals, notes = None, []
    for choice in params.models:
        kind = _family(choice)
        own = measured[measured["model"] == _random_name(choice)]
        rows = own if len(own) else measured[measured["family"] == kind]
        if not len(own):
            notes.append(f"{choice.key} ({kind}) not run: projected at the median rates of "
                         f"{', '.join(sorted(set(rows['model'])))} (same ViT-B cost assumed)"
                         if kind == "ViT" else f"{choice.key} ({kind}) projected at "
                         f"{', '.join(sorted(set(rows['model'])))}'s rates")
        rates = rows.groupby("stage")["images_per_s"].median()
        per_core = (rows["images"] / rows["cpu_seconds"]).groupby(rows["stage"]).median()
        busy = per_core * CORES
        depth = units[units["model"].isin(set(rows["model"]))]["units"].median()
        strategies = params.finetune.strategies.get(choice.key, ())
        trained = sum(s in strategies for s in ("lora", "full")) * SEEDS
        work = pd.Series({
            "decode": TRAIN + VAL,
            "linear_probe": (TRAIN + VAL) * SEEDS * ("linear_probe" in strategies),
            "lora": (TRAIN + VAL) * EPOCHS * SEEDS * ("lora" in strategies),
            "full": (TRAIN + VAL) * EPOCHS * SEEDS * ("full" in strategies),
            "extract": ANNOTATED * (1 + trained),
            "score": ANNOTATED * (1 + trained),
            "sanity": ANNOTATED * (1 + 2 * (depth if depth == depth else 14)),
        })
        missing = [stage for stage, images in work.items() if images and stage not in rates]
        if missing:
            notes.append(f"{choice.key}: {', '.join(missing)} not measured for a {kind}: left "
                         "out of its CPU hours")
        measured_here = (work > 0) & work.index.isin(rates.index)
        gpu = pd.Series(gpu_rates).reindex(work.index).fillna(per_core.reindex(work.index) * host_cores)
        hours = pd.DataFrame({  # a model's hours per stage, summed over the models
            "work (images)": work.astype(int),
            "cpu hours": (work / rates.reindex(work.index) / 3600).where(measured_here, 0.0),
            "cpu hours (busy)": (work / busy.reindex(work.index) / 3600).where(measured_here, 0.0),
            "gpu hours": (work / gpu / 3600).where(work > 0, 0.0)})
        totals = hours if totals is None else totals + hours
    budget = totals.rename_axis("stage").reset_index()
    budget["gpu rate (img/s, assumed)"] = budget["stage"].map(
        lambda stage: gpu_rates.get(stage, f"host: {host_cores} cores at the rate measured"))
    budget["turn down"] = budget["stage"].map(TURN_DOWN)
    hours = ["cpu hours", "cpu hours (busy)", "gpu hours"]
    total = {"stage": "total", "work (images)": budget["work (images)"].sum(),
             **budget[hours].sum()}
    return pd.concat([budget, pd.DataFrame([total])], ignore_index=True).astype(object).fillna(""), notes


def training_rates(table: pd.DataFrame) -> pd.DataFrame:
    """Per model: each training loader's images per second of wall time and per CPU second
    (what a loader worker with a core to itself delivers), frames against decoding each
    time, beside the model's own training rates (images/s of wall time)."""
    rows = table[table["model"] != "-"].assign(
        per_cpu_s=lambda t: t["images"] / t["cpu_seconds"])
    stages = ["loader-decode", "loader-frames", "lora", "full"]
    wall, cpu = (rows.pivot_table(index="model", columns="stage", values=rate).reindex(columns=stages)
                 for rate in ("images_per_s", "per_cpu_s"))
    rates = pd.DataFrame({
        "decode-each img/s": wall["loader-decode"], "frames img/s": wall["loader-frames"],
        "decode-each img/CPU s": cpu["loader-decode"], "frames img/CPU s": cpu["loader-frames"],
        "lora img/s": wall["lora"], "full img/s": wall["full"]})
    rates["frames / decode-each (CPU)"] = (rates["frames img/CPU s"]
                                           / rates["decode-each img/CPU s"])
    return rates.round(2).reset_index()


def report(table: pd.DataFrame, gpu_rates: dict[str, float], commands: Sequence[str],
           host_cores: int, rendered: bool = False) -> str:
    """The rehearsal's page: what was measured, the training loader, the real profile's
    budget on this machine and on one GPU, and whether that fits in an hour."""
    params = config.load_params(REAL, base=ROOT)
    budget, notes = project(table, params, gpu_rates, host_cores)
    loaders = training_rates(table)
    workers = params.finetune.num_workers
    feed = "" if loaders["frames img/CPU s"].isna().all() else (
        f"With `finetune.num_workers` = {workers}, each worker a core, the frames loader "
            f"feeds about {workers * loaders['frames img/CPU s'].median():,.0f} images/s and "
            f"the loader decoding each time about "
            f"{workers * loaders['decode-each img/CPU s'].median():,.0f}, against the GPU "
            f"training rates assumed below (LoRA {gpu_rates['lora']:.0f}, full "
            f"{gpu_rates['full']:.0f} images/s).")
    stages = budget[budget["stage"] != "total"].set_index("stage")
    gpu_total = budget["gpu hours"].iloc[-1]
    per_seed = stages.loc[["linear_probe", "lora", "full"], "gpu hours"].sum() / SEEDS
    ranked = stages["gpu hours"].sort_values(ascending=False)
    on_gpu = stages.loc[list(gpu_rates), "gpu hours"].sum()  # the rest runs on the host
    speedup = on_gpu / max(1 - (gpu_total - on_gpu), 1e-9)
    verdict = (f"Projected on one GPU: {gpu_total:.2f} h, "
               + ("within the hour." if gpu_total <= 1 else
                  "over the hour. By stage: "
                  + ", ".join(f"`{stage}` {hours:.2f} h" for stage, hours in ranked.items())
                  + f". `{ranked.index[0]}` {WHY[ranked.index[0]]}. The hour needs a GPU "
                  f"{speedup:.2f} times these rates (full fine-tuning at "
                  f"{speedup * gpu_rates['full']:,.0f} images/s, LoRA at "
                  f"{speedup * gpu_rates['lora']:,.0f}). The training stages scale "
                  f"with seeds x epochs: one seed gives {gpu_total - (SEEDS - 1) * per_seed:.2f} "
                  "h in all, and early stopping (patience) cuts epochs further."))
    load = "" if rendered else ": load average " + ", ".join(
        f"{x:.1f}" for x in os.getloadavg()) + " at the end"
    peak = table[["peak_rss_gib", "worker_peak_rss_gib"]].max()
    return (
        f"# Rehearsal of the real profile\n\nGenerated by "
        f"{' and '.join(f'`{c}`' for c in commands)} on {platform.node()} "
        f"({os.cpu_count()} cores, shared with other work{load}; "
        f"{time.strftime('%Y-%m-%d')}){' and rendered from their tables' if rendered else ''}; "
        "do not edit by hand. Rates are images (for `sanity`, "
        "image-steps: one image extracted by one randomised model) per second of wall time, "
        "model building and start-up included, on contended cores, so wall times are upper "
        "bounds. `loader-decode` is the training loader before frames files (each image "
        "decoded, framed and cropped every epoch), `loader-frames` the loader over the frames "
        "file (`sightline.frames`) with the same crop, batch and workers; `decode` writes that "
        f"file once. Peak resident memory: {peak['peak_rss_gib']:.2f} GiB in the main process, "
        f"{peak['worker_peak_rss_gib']:.2f} GiB in the largest loader worker.\n\n"
        f"## Measured\n\n{table.to_markdown(index=False)}\n\n"
        f"## Training: loader against model\n\n"
        f"{loaders.to_markdown(index=False)}\n\n{feed}\n\n"
        "## The real profile, projected\n\n"
        f"{ANNOTATED} annotated images; {TRAIN} training + {VAL} validation images per run, "
        f"{EPOCHS} epochs, {SEEDS} seeds, the strategies of `params/wikichurches.yaml`; "
        "extraction and scoring for the frozen model and each LoRA / full run; the "
        "randomisation test in both modes at every depth. The GPU column multiplies that work "
        "by assumed rates (`--gpu-rates`; training in bf16 autocast as the code trains on a "
        "GPU, at timm's published RTX 3090 rate for ViT-B/16, LoRA 1.5 times it; maps in "
        "float32), not by anything measured here, except scoring, which runs on the host's "
        "CPU, one store per worker (`execution.engine: processes` or `ray`): at "
        f"the rate of one core measured here (images per CPU second) times {host_cores} "
        "host cores (`--host-cores`) unless given. "
        "`cpu hours (busy)` divides each stage's CPU time here by the cores, the wall time "
        "the work would take with the cores to itself. The randomisation test's rate here "
        "spreads each step's fixed cost (copying and re-initialising the model, its store) "
        f"over the few images it ran, in the real profile over {ANNOTATED}: its CPU hours are "
        "an upper bound.\n\n"
        + "".join(f"- {note}\n" for note in notes)
        + f"\n{budget.to_markdown(index=False, floatfmt='.2f')}\n\n{verdict}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2 models, 4 images, a 60-image pool")
    parser.add_argument("--pool", type=int, default=300)
    parser.add_argument("--images", type=int, default=ANNOTATED,
                        help="annotated images to extract and score")
    parser.add_argument("--models", default="")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--sanity-images", type=int, default=4)
    parser.add_argument("--loader-images", type=int, default=64,
                        help="training images the decode-each loader reads")
    parser.add_argument("--stages", default="train,maps",
                        help="train (decode, loaders, probe, LoRA, full) and/or maps "
                             "(extract, score, sanity; without train, an untimed probe of "
                             "a few images gives the head)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--gpu-rates", default="")
    parser.add_argument("--host-cores", type=int, default=16,
                        help="the GPU machine's CPU cores, scoring's Ray workers")
    parser.add_argument("--out", default=str(ROOT / "rehearsal"))
    parser.add_argument("--table", default="",
                        help="write the page from these rehearsal.csv files (comma-separated) "
                             "instead of running")
    parser.add_argument("--docs", default="")
    args = parser.parse_args()
    if args.quick:
        args.pool, args.images, args.steps, args.sanity_images, args.loader_images = 60, 4, 1, 1, 16
        args.models = args.models or "clip,resnet50_tv"
    args.models = tuple(m for m in args.models.split(",") if m)
    args.stages = tuple(args.stages.split(","))
    try:
        given = {k: float(v) for k, v in (kv.split("=") for kv in args.gpu_rates.split(",") if kv)}
    except ValueError:
        parser.error("--gpu-rates: give stage=images/s pairs, e.g. full=739,lora=1108")
    if set(given) - set(TURN_DOWN):
        parser.error(f"--gpu-rates: no stage {', '.join(sorted(set(given) - set(TURN_DOWN)))}; "
                     f"the stages are {', '.join(TURN_DOWN)}")
    gpu_rates = {**GPU_RATES, **given}
    torch.manual_seed(0)
    np.random.seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/rehearse.py " + " ".join(sys.argv[1:])
    if args.table:  # runs made apart (e.g. one per model), read from their tables
        csvs = [Path(c) for c in args.table.split(",")]
        table = pd.concat(map(pd.read_csv, csvs), ignore_index=True).drop_duplicates(
            ["stage", "model"])
        commands = [(c.parent / "command.txt").read_text().strip() for c in csvs]
    else:
        (out / "command.txt").write_text(command)
        table, commands = rehearse(args), [command]
    text = report(table, gpu_rates, commands, args.host_cores, rendered=bool(args.table))
    (out / "rehearsal.md").write_text(text)
    if args.docs:
        Path(args.docs).write_text(text)
    print(text)
    shutil.rmtree(out / "cache", ignore_errors=True)


if __name__ == "__main__":
    main()
