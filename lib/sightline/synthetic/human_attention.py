"""A stand-in of the ML Interpretability Benchmark (human-attention masks), in its layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..data.human_attention import HUMAN_ATTENTION_FOLDERS
from .manifest import generation, reuse

# Per subject: the body's colour and where its salient parts sit, relative to the body box
# (x, y, radius as fractions of the body width); annotators mark those parts.
_SUBJECT_PARTS = {
    "dog": ((150, 110, 70), ((0.92, 0.15, 0.16), (0.08, 0.1, 0.07))),  # head, tail
    "cat": ((120, 120, 125), ((0.9, 0.12, 0.15), (0.86, -0.05, 0.06))),  # head, ears
    "car": ((180, 30, 40), ((0.22, 0.95, 0.12), (0.78, 0.95, 0.12), (0.5, 0.2, 0.14))),
    "bird": ((60, 90, 160), ((0.9, 0.2, 0.13), (0.45, 0.35, 0.2))),  # head, wing
    "plane": ((200, 200, 210), ((0.5, 0.5, 0.3), (0.05, 0.2, 0.1))),  # wings, tail
    "zebra": ((235, 235, 235), ((0.9, 0.15, 0.15), (0.45, 0.5, 0.25))),
}
_DEFAULT_PARTS = ((100, 140, 90), ((0.5, 0.4, 0.25),))
_ANNOTATORS = 10
_FOLDERS = HUMAN_ATTENTION_FOLDERS[0]  # the spelling the benchmark ships


def make_human_attention(root: str | Path, *, subjects: tuple[str, ...] = ("dog", "car"),
                         per_subject: int = 5, seed: int = 0,
                         image_size: tuple[int, int] = (320, 256)) -> Path:
    """Write a deterministic stand-in of the ML Interpretability Benchmark into ``root`` (reused
    when made with the same arguments). ``Image/ImageNet/original_images/<subject><k>.jpg``: a
    body (an ellipse, its colour by subject) with its salient parts (head, wheels, ...) among
    distractor blobs; ``.../human_attention_mask/<subject><k>.jpg``: grayscale, the share of
    ``_ANNOTATORS`` simulated annotators who marked each pixel (each marks every salient part as
    a blurred blob, jittered in centre and size, and sometimes a distractor: annotator noise)."""
    root = Path(root)
    args = {"subjects": list(subjects), "per_subject": per_subject, "seed": seed,
            "image_size": list(image_size)}
    if reuse(root, args, "make_human_attention"):
        return root
    pairs = [(s, f"{s}{k}.jpg") for s in subjects for k in range(1, per_subject + 1)]
    base = Path("Image") / "ImageNet"
    files = [str(base / folder / name) for folder in _FOLDERS for _, name in pairs]
    with generation(root, args, files):
        for folder in _FOLDERS:
            (root / base / folder).mkdir(parents=True, exist_ok=True)
        for index, (subject, name) in enumerate(pairs):
            image, mask = _attention_scene(np.random.default_rng([seed, 3, index]), subject,
                                           image_size)
            image.save(root / base / _FOLDERS[0] / name, quality=90)
            mask.save(root / base / _FOLDERS[1] / name, quality=75)
    return root


def _attention_scene(rng: np.random.Generator, subject: str, nominal: tuple[int, int]
                     ) -> tuple[Image.Image, Image.Image]:
    """One image and its annotator-averaged attention mask (grayscale, 0..255)."""
    width = int(nominal[0] * rng.uniform(0.85, 1.15))
    height = int(nominal[1] * rng.uniform(0.85, 1.15))
    colour, parts = _SUBJECT_PARTS.get(subject, _DEFAULT_PARTS)
    sky = tuple(int(c) for c in rng.integers(90, 200, 3))
    image = Image.new("RGB", (width, height), sky)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, int(height * 0.7), width, height], fill=(90, 120, 70))
    distractors = []
    for _ in range(int(rng.integers(2, 5))):  # clutter the annotators mostly ignore
        x, y, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(8, 25)
        shade = tuple(int(c) for c in rng.integers(40, 230, 3))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=shade)
        distractors.append((x, y, r))
    body_w = width * rng.uniform(0.35, 0.55)
    body_h = body_w * rng.uniform(0.45, 0.7)
    x0 = rng.uniform(0.05 * width, width - body_w - 0.05 * width)
    y0 = rng.uniform(0.15 * height, height - body_h - 0.1 * height)
    jitter = tuple(int(np.clip(c + rng.integers(-20, 21), 0, 255)) for c in colour)
    draw.ellipse([x0, y0, x0 + body_w, y0 + body_h], fill=jitter, outline=(30, 30, 30))
    centres = []
    for px, py, pr in parts:
        cx, cy, r = x0 + px * body_w, y0 + py * body_h, pr * body_w
        darker = tuple(int(c * 0.6) for c in jitter)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=darker, outline=(20, 20, 20))
        centres.append((cx, cy, r))
    yy, xx = np.mgrid[0:height, 0:width]
    votes = np.zeros((height, width))
    for _ in range(_ANNOTATORS):
        marked = np.zeros((height, width), bool)
        for cx, cy, r in centres:
            jx, jy = cx + rng.normal(0, 0.25 * r), cy + rng.normal(0, 0.25 * r)
            jr = r * rng.uniform(0.9, 1.6)
            marked |= (xx - jx) ** 2 + (yy - jy) ** 2 <= jr**2
        if rng.random() < 0.2:  # annotator noise: a distractor marked by mistake
            dx, dy, dr = distractors[int(rng.integers(len(distractors)))]
            marked |= (xx - dx) ** 2 + (yy - dy) ** 2 <= dr**2
        votes += marked
    mask = Image.fromarray(np.uint8(np.round(votes / _ANNOTATORS * 255)), "L")
    return image, mask.filter(ImageFilter.GaussianBlur(radius=max(2, width // 80)))
