"""The demo data set in WikiChurches' own on-disk format: images, expert boxes, churches,
style names and church-disjoint pool splits, written once and reused while it matches."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.wikichurches import MAIN_STYLES
from .facades import FEATURES, render
from .manifest import generation, reuse, write_json

POOL_SPLITS = (("train", 0.7), ("val", 0.1), ("test", 0.2))
_COUNTRIES = (("Q183", "Germany"), ("Q142", "France"), ("Q38", "Italy"), ("Q29", "Spain"))
_SAINTS = ("St. Mary", "St. Peter", "St. Martin", "St. Nicholas", "St. Michael", "St. Anne")
_CHURCH_KEYS = ("id", "name", "built_year", "styles", "country", "location")


def make_synthetic(root: str | Path, *, n_annotated: int = 24, n_pool: int = 96, seed: int = 0,
                   image_size: tuple[int, int] = (320, 256), parts: bool = True) -> Path:
    """Write a deterministic demo WikiChurches folder into ``root``, or reuse its manifest's.
    ``image_size``: the nominal ``(width, height)``, varied by up to 20% per image;
    ``parts=False``: the control twin, the same images and boxes with the parts undrawn."""
    root = Path(root)
    args = {"n_annotated": n_annotated, "n_pool": n_pool, "seed": seed,
            "image_size": list(image_size), "parts": parts}
    if reuse(root, args, "make_synthetic"):
        return root
    rng = np.random.default_rng([seed, 0])
    annotated = _churches(rng, n_annotated, first_id=1, two_styles=True)
    pool = _churches(rng, n_pool, first_id=len(annotated) + 1, two_styles=False)
    splits = _assign_splits(rng, pool)
    annotated_images = [(church, k) for church in annotated for k in range(church["n_images"])]
    pool_images = [(church, k, split) for church, split in zip(pool, splits, strict=True)
                   for k in range(church["n_images"])]
    files = [f"images/{_image_name(c, k)}" for c, k, *_ in annotated_images + pool_images]
    files += ["building_parts.json", "churches.json", "style_names.txt"]
    files += [f"wc4_{split}.txt" for split, _ in POOL_SPLITS]
    with generation(root, args, files):
        (root / "images").mkdir(exist_ok=True)
        annotations = {}
        for index, (church, k) in enumerate(annotated_images):
            groups = _write_image(root, church, k, image_size, [seed, 1, index],
                                  closeup=index == 0, parts=parts)
            annotations[_image_name(church, k)] = {"styles": church["styles"], "bbox_groups": groups}
        split_lines: dict[str, list[str]] = {split: [] for split, _ in POOL_SPLITS}
        for index, (church, k, split) in enumerate(pool_images):
            _write_image(root, church, k, image_size, [seed, 2, index], closeup=False, parts=parts)
            split_lines[split].append(f"{_image_name(church, k)} {church['styles'][0]}")

        meta = [{"name": name, "parents": []} for name in FEATURES]
        write_json(root / "building_parts.json", {"meta": meta, "annotations": annotations})
        churches = {c["id"]: {key: c[key] for key in _CHURCH_KEYS} for c in annotated + pool}
        write_json(root / "churches.json", churches)
        (root / "style_names.txt").write_text("".join(f"{q} {n}\n" for q, n in MAIN_STYLES.items()))
        for split, lines in split_lines.items():
            (root / f"wc4_{split}.txt").write_text("".join(f"{line}\n" for line in lines))
    return root


def _churches(rng: np.random.Generator, n_images: int, first_id: int, two_styles: bool
              ) -> list[dict]:
    """Churches with 1-3 images each, styles cycling so every style appears; with
    ``two_styles`` every tenth carries a second (3 of the 139 real annotated images do)."""
    churches: list[dict] = []
    order = [str(q) for q in rng.permutation(list(MAIN_STYLES))]
    total = 0
    while total < n_images:
        number = first_id + len(churches)
        styles = [order[len(churches) % 4]]
        if two_styles and len(churches) % 10 == 7:
            styles.append(order[(len(churches) + 1) % 4])
        n = int(min(rng.choice([1, 1, 1, 2, 2, 3]), n_images - total))
        year = int(rng.integers(1050, 1780))
        built = [year, year + 40] if number % 5 == 0 else None if number % 7 == 0 else year
        country = _COUNTRIES[int(rng.integers(len(_COUNTRIES)))]
        churches.append({
            "id": f"Q{9_000_000 + number}",
            "name": f"{_SAINTS[number % len(_SAINTS)]} Church (synthetic {number})",
            "built_year": built,  # an int, a list or null, as in the real file
            "styles": styles,
            "country": {"id": country[0], "name": country[1]},
            "location": {"lat": round(float(rng.uniform(37, 55)), 5),
                         "lon": round(float(rng.uniform(-8, 20)), 5)},
            "n_images": n,
        })
        total += n
    return churches


def _image_name(church: dict, k: int) -> str:
    return f"{church['id']}_wd{k}.jpg"


def _assign_splits(rng: np.random.Generator, churches: list[dict]) -> list[str]:
    """Church-disjoint 70/10/20 splits: each church, in shuffled order, joins the split
    furthest below its share of images (so with 3+ churches no split is empty)."""
    targets = np.array([share for _, share in POOL_SPLITS]) * sum(c["n_images"] for c in churches)
    filled = np.zeros(len(POOL_SPLITS))
    splits = [""] * len(churches)
    for i in rng.permutation(len(churches)):
        choice = int(np.argmax(1 - filled / targets))
        splits[i] = POOL_SPLITS[choice][0]
        filled[choice] += churches[i]["n_images"]
    return splits


def _write_image(root: Path, church: dict, k: int, size: tuple[int, int], stream: list[int],
                 closeup: bool, parts: bool) -> list[dict]:
    """Render and save one image (its own random stream); return its relative bbox_groups."""
    rng = np.random.default_rng(stream)
    closeup = closeup or bool(rng.random() < 0.15)
    image, groups = render(rng, church["styles"], size, closeup, parts)
    image.save(root / "images" / _image_name(church, k), quality=90)
    w, h = image.size
    return [{"group_label": FEATURES.index(group_name), "elements": [
        {"left": round(x0 / w, 6), "top": round(y0 / h, 6), "width": round((x1 - x0) / w, 6),
         "height": round((y1 - y0) / h, 6), "label": FEATURES.index(feature)}
        for feature, (x0, y0, x1, y1) in elements]} for group_name, elements in groups]

