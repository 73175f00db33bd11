"""Cost of the Shared Interest study's maps at full size (random weights), on this machine.

Per model (Swin-T, CaiT-S, ResNet-101, EfficientNet-B6): Grad-CAM seconds per image, and XRAI
split into its gradient evaluations (2 baselines x ``--steps``), segmentation and ranking,
checked by a real call at ``--check-steps``; projected to the 100-image, 4-model study.

    python benchmarks/bench_shared_interest.py [--quick] [--steps 100] [--batch 20]
        [--algorithm full] [--threads N]
"""

from __future__ import annotations

import argparse

import harness
import numpy as np
import torch
from saliency.core import XRAI

from sightline import saliency
from sightline.models import load_model

MODELS = ("swin_t", "cait_s", "resnet101", "efficientnet_b6")
STUDY_IMAGES = 100


def bench_model(key: str, args: argparse.Namespace) -> dict[str, float]:
    model = load_model(key, size="base", seed=0)
    size = model.spec.geometry.size
    torch.manual_seed(0)
    image = torch.randn(1, 3, size, size)
    gradcam, _ = harness.best(lambda: saliency.extract(model, image, ["gradcam"]), args.reps,
                              warm_up=False)
    target = int(model.score(image).argmax())
    call = saliency.xrai_call_function(model, target)
    batch = np.repeat(image[0].permute(1, 2, 0).numpy()[None], args.batch, axis=0)
    with saliency.common._frozen(model.module):
        per_eval = harness.best(lambda: call(batch), args.reps, warm_up=False)[0] / args.batch
    hwc = image[0].permute(1, 2, 0).numpy()
    segments = saliency.xrai_segments(hwc)
    segment_s, _ = harness.best(lambda: saliency.xrai_segments(hwc), args.reps, warm_up=False)
    attribution = np.random.default_rng(0).normal(size=(size, size))
    rank = XRAI._xrai if args.algorithm == "full" else XRAI._xrai_fast
    rank_s, _ = harness.best(lambda: rank(attribution, segments), 1, warm_up=False)
    check = saliency.XraiSettings(args.check_steps, min(args.batch, 2 * args.check_steps),
                                  args.algorithm)
    measured, _ = harness.best(lambda: saliency.xrai_maps(model, image, xrai=check), 1, warm_up=False)
    return {"gradcam_s": gradcam, "eval_s": per_eval, "segment_s": segment_s, "rank_s": rank_s,
            "check_measured": measured,
            "check_projected": 2 * args.check_steps * per_eval + segment_s + rank_s,
            "xrai_s": 2 * args.steps * per_eval + segment_s + rank_s}


def main() -> None:
    parser = harness.parser(__doc__, "ResNet-101 and CaiT-S, 1 rep")
    parser.add_argument("--steps", type=int, default=100, help="IG steps to project to")
    parser.add_argument("--batch", type=int, default=20, help="IG inputs per model call")
    parser.add_argument("--algorithm", choices=("full", "fast"), default="full")
    parser.add_argument("--check-steps", type=int, default=4)
    parser.add_argument("--reps", type=int, default=2)
    args = harness.parse(parser)
    if args.quick:
        args.reps, args.batch = 1, min(args.batch, 8)
    keys = ("resnet101", "cait_s") if args.quick else MODELS
    print(f"{args.threads} threads, torch {torch.__version__}; XRAI at {args.steps} steps x 2 "
          f"baselines, batch {args.batch}, {args.algorithm} ranking; seconds per image")
    harness.header(f"{'model':<16} {'gradcam':>8} {'grad eval':>9} {'segment':>8} {'rank':>6} "
                   f"{f'xrai@{args.check_steps} meas/proj':>20} {f'xrai@{args.steps}':>9}")
    total = 0.0
    for key in keys:
        r = bench_model(key, args)
        total += STUDY_IMAGES * (r["gradcam_s"] + r["xrai_s"])
        print(f"{key:<16} {r['gradcam_s']:>8.2f} {r['eval_s']:>9.3f} {r['segment_s']:>8.2f} "
              f"{r['rank_s']:>6.2f} {r['check_measured']:>10.1f} / {r['check_projected']:<7.1f} "
              f"{r['xrai_s']:>9.1f}", flush=True)
    print(f"projected {STUDY_IMAGES}-image study ({', '.join(keys)}; Grad-CAM + XRAI): "
          f"{total / 3600:.1f} h on this machine")


if __name__ == "__main__":
    main()
