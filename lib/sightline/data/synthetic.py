"""Deterministic demo data written in WikiChurches' own on-disk format.

Each image is a small church façade (sky, clouds, ground, a textured wall, maybe a
tower, trees and a plain door) carrying the *diagnostic parts* of its style, drawn so
that a model can tell the styles apart only by those parts:

- Romanesque: round-arch windows, an arcade gallery, a round-arch portal;
- Gothic: pointed-arch windows, a rose window, pinnacles, a pointed-arch portal;
- Renaissance: a triangular pediment, rectangular windows between pilasters;
- Baroque: volutes, a curved pediment, oval windows.

Everything else (sky, ground, wall and its outline, tower, trees, a plain door, plaques,
colours, brightness, aspect ratio) is drawn first, from the same distributions for every
style, and the parts are placed around it; so the style is recoverable only from the
parts. ``parts=False`` renders the same images with the parts left out: a classifier
trained on those stays at chance (the check in the Q2 notebook). Each style's windows have
their own glass tint, part of the parts like their shape.

The expert boxes of the annotated images are exactly the drawn extents of the diagnostic
parts; in "close-up" shots one part runs off the image edge, so its box runs
past ``[0, 1]`` as a few real boxes do. Pool images (style-labelled, for fine-tuning) come
from the same generator, from other churches, in church-disjoint splits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from sightline.data.contract import MANIFEST, DataError
from sightline.data.wikichurches import MAIN_STYLES

# The generator's version is its own source: any edit regenerates the demo data.
VERSION = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
FEATURES = [
    "Round Arch Window",
    "Arcade Gallery",
    "Round Arch",
    "Pointed Arch Window",
    "Rose Window",
    "Pinnacle",
    "Pointed Arch",
    "Triangular Pediment",
    "Rectangular Window",
    "Volute",
    "Curved Pediment",
    "Oval Window",
    "Door",
    "Portal",
]
# Per style QID, the kinds of diagnostic part it draws; the first is always a window.
STYLE_PARTS = {
    "Q46261": ("Round Arch Window", "Arcade Gallery", "Round Arch Portal"),
    "Q176483": ("Pointed Arch Window", "Rose Window", "Pinnacle", "Pointed Arch Portal"),
    "Q236122": ("Rectangular Window", "Triangular Pediment"),
    "Q840829": ("Oval Window", "Volute", "Curved Pediment"),
}
POOL_SPLITS = (("train", 0.7), ("val", 0.1), ("test", 0.2))
_MAX_BOXES = 8
# Each style's windows have their own glass tint: part of the diagnostic parts, like their
# shape (every other colour is drawn the same way for all styles).
_GLASS = {
    "Round Arch Window": (40, 52, 80),
    "Pointed Arch Window": (112, 36, 64),
    "Rose Window": (112, 36, 64),
    "Rectangular Window": (58, 92, 78),
    "Oval Window": (140, 112, 44),
}
_STONES = ((196, 178, 150), (172, 170, 162), (176, 112, 92), (214, 204, 184), (150, 140, 128))
_COUNTRIES = (("Q183", "Germany"), ("Q142", "France"), ("Q38", "Italy"), ("Q29", "Spain"))
_SAINTS = ("St. Mary", "St. Peter", "St. Martin", "St. Nicholas", "St. Michael", "St. Anne")

PixelBox = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
Elements = list[tuple[str, PixelBox]]  # (feature name, box) of one bbox group


@dataclass(frozen=True)
class _Palette:
    wall: tuple[int, int, int]
    dark: tuple[int, int, int]
    light: tuple[int, int, int]
    glass: tuple[int, int, int]


@dataclass(frozen=True)
class _Facade:
    width: int
    height: int
    wall: PixelBox
    ground: float


def make_synthetic(
    root: str | Path,
    *,
    n_annotated: int = 24,
    n_pool: int = 96,
    seed: int = 0,
    image_size: tuple[int, int] = (320, 256),
    parts: bool = True,
) -> Path:
    """Write a deterministic demo WikiChurches folder into ``root``; reuse it if already made.

    ``image_size`` is the nominal ``(width, height)``; each image varies it by up to 20%.
    A folder is reused only when it was made by this generator with these arguments and
    every file still matches the SHA-256 in its manifest; otherwise it is made again.
    ``parts=False`` writes the control twin: the same images and boxes with the
    diagnostic parts left undrawn, so nothing in them tells the styles apart.
    """
    root = Path(root)
    args = {
        "n_annotated": n_annotated,
        "n_pool": n_pool,
        "seed": seed,
        "image_size": list(image_size),
        "parts": parts,
    }
    manifest_path = root / MANIFEST
    old = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    if old is None and (root / "building_parts.json").exists():
        raise DataError(
            f"{root} holds a building_parts.json not made by make_synthetic; "
            "refusing to overwrite it. Pick an empty folder for the demo data."
        )
    if old is not None:
        same = old.get("version") == VERSION and old.get("args") == args
        if same and verify(root) is None:
            return root
        for name in old.get("files", []):
            (root / name).unlink(missing_ok=True)

    rng = np.random.default_rng([seed, 0])
    annotated = _churches(rng, n_annotated, first_id=1, two_styles=True)
    pool = _churches(rng, n_pool, first_id=len(annotated) + 1, two_styles=False)
    splits = _assign_splits(rng, pool)
    pool_images = [
        (church, k, split)
        for church, split in zip(pool, splits, strict=True)
        for k in range(church["n_images"])
    ]
    names = [_image_name(c, k) for c, k in _images(annotated)]
    names += [_image_name(c, k) for c, k, _ in pool_images]
    files = [f"images/{name}" for name in names]
    files += ["building_parts.json", "churches.json", "style_names.txt"]
    files += [f"wc4_{split}.txt" for split, _ in POOL_SPLITS]
    manifest = {"version": VERSION, "args": args, "files": files, "complete": False}
    root.mkdir(parents=True, exist_ok=True)
    _write_json(manifest_path, manifest)  # an interrupted run leaves an incomplete manifest

    (root / "images").mkdir(exist_ok=True)
    annotations = {}
    for index, (church, k) in enumerate(_images(annotated)):
        groups = _write_image(
            root, church, k, image_size, [seed, 1, index], closeup=index == 0, parts=parts
        )
        annotations[_image_name(church, k)] = {"styles": church["styles"], "bbox_groups": groups}
    split_lines = {split: [] for split, _ in POOL_SPLITS}
    for index, (church, k, split) in enumerate(pool_images):
        _write_image(root, church, k, image_size, [seed, 2, index], closeup=False, parts=parts)
        split_lines[split].append(f"{_image_name(church, k)} {church['styles'][0]}")

    meta = [{"name": name, "parents": []} for name in FEATURES]
    _write_json(root / "building_parts.json", {"meta": meta, "annotations": annotations})
    churches = {c["id"]: {key: c[key] for key in _CHURCH_KEYS} for c in annotated + pool}
    _write_json(root / "churches.json", churches)
    (root / "style_names.txt").write_text("".join(f"{q} {n}\n" for q, n in MAIN_STYLES.items()))
    for split, lines in split_lines.items():
        (root / f"wc4_{split}.txt").write_text("".join(f"{line}\n" for line in lines))
    hashes = {name: _sha256(root / name) for name in files}
    _write_json(manifest_path, {**manifest, "files": hashes, "complete": True})
    return root


def verify(root: str | Path) -> str | None:
    """Why the generated folder ``root`` cannot be used as it is, or None if every file matches.

    Checks the manifest is complete and each file listed in it has its recorded SHA-256.
    """
    root = Path(root)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        return "not generated yet"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError):
        return f"{MANIFEST} is unreadable"
    if not manifest.get("complete") or not isinstance(manifest.get("files"), dict):
        return "an earlier generation did not finish"
    for name, expected in manifest["files"].items():
        path = root / name
        if not path.is_file():
            return f"{name} is missing"
        if _sha256(path) != expected:
            return f"{name} does not match the hash in {MANIFEST}"
    return None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_CHURCH_KEYS = ("id", "name", "built_year", "styles", "country", "location")


def _churches(
    rng: np.random.Generator, n_images: int, first_id: int, two_styles: bool
) -> list[dict]:
    """Churches with 1-3 images each, styles cycling so every style appears.

    With ``two_styles`` every tenth church carries a second style (3 of the 139 real
    annotated images do); pool churches carry one, so their style label is unambiguous.
    """
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
        churches.append(
            {
                "id": f"Q{9_000_000 + number}",
                "name": f"{_SAINTS[number % len(_SAINTS)]} Church (synthetic {number})",
                "built_year": built,  # an int, a list or null, as in the real file
                "styles": styles,
                "country": {"id": country[0], "name": country[1]},
                "location": {
                    "lat": round(float(rng.uniform(37, 55)), 5),
                    "lon": round(float(rng.uniform(-8, 20)), 5),
                },
                "n_images": n,
            }
        )
        total += n
    return churches


def _images(churches: list[dict]):
    for church in churches:
        for k in range(church["n_images"]):
            yield church, k


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


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")


def _write_image(
    root: Path,
    church: dict,
    k: int,
    size: tuple[int, int],
    stream: list[int],
    closeup: bool,
    parts: bool,
) -> list[dict]:
    """Render and save one image (its own random stream); return its relative bbox_groups."""
    rng = np.random.default_rng(stream)
    closeup = closeup or bool(rng.random() < 0.15)
    image, groups = _render(rng, church["styles"], size, closeup, parts)
    image.save(root / "images" / _image_name(church, k), quality=90)
    w, h = image.size
    return [
        {
            "group_label": FEATURES.index(group_name),
            "elements": [
                {
                    "left": round(x0 / w, 6),
                    "top": round(y0 / h, 6),
                    "width": round((x1 - x0) / w, 6),
                    "height": round((y1 - y0) / h, 6),
                    "label": FEATURES.index(feature),
                }
                for feature, (x0, y0, x1, y1) in elements
            ],
        }
        for group_name, elements in groups
    ]


def _render(
    rng: np.random.Generator,
    styles: list[str],
    size: tuple[int, int],
    closeup: bool = False,
    parts: bool = True,
) -> tuple[Image.Image, list[tuple[str, Elements]]]:
    """One façade image and its parts as ``(group feature, [(feature, pixel box), ...])``.

    ``parts=False`` draws the same image without the diagnostic parts (same random
    stream, so everything else is pixel for pixel the same).
    """
    width = int(round(size[0] * rng.uniform(0.8, 1.2)))
    height = int(round(size[1] * rng.uniform(0.8, 1.2)))
    side = int(rng.integers(2)) if closeup else None
    facade = _layout(rng, width, height, side)
    palette = _palette(rng)
    image = _background(rng, facade, palette)
    draw = ImageDraw.Draw(image)
    _trees(rng, draw, facade)

    # Clutter first, drawn the same way whatever the style; the parts avoid it.
    occupied: list[PixelBox] = []
    if rng.random() < 0.5:
        _plain_door(rng, draw, facade, palette, occupied)
    for _ in range(int(rng.integers(0, 3))):
        plaque = _free_spot(
            rng, facade, occupied, rng.uniform(0.05, 0.1) * _wall_width(facade), 0.7
        )
        if plaque is not None:
            tint = tuple(int(c) for c in rng.integers(60, 200, size=3))
            draw.rectangle(plaque, fill=tint, outline=palette.dark)
            occupied.append(plaque)
    kinds = _choose_kinds(rng, styles, closeup)
    first_body = next((k for k in kinds if k in _BODY), None)
    groups: list[tuple[str, Elements]] = []
    for kind in kinds:
        for group in _place(rng, kind, facade, occupied, side if kind == first_body else None):
            if sum(len(g[1]) for g in groups) + len(group[1]) > _MAX_BOXES:
                break
            groups.append(group)
            occupied += [box for _, box in group[1]]
    if parts:
        for group_name, elements in groups:
            glass = _GLASS.get(group_name, palette.glass)
            _DRAW[group_name](draw, elements, dataclasses.replace(palette, glass=glass))

    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels * rng.uniform(0.8, 1.15) * rng.uniform(0.93, 1.07, size=3)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), groups


def _layout(rng: np.random.Generator, width: int, height: int, side: int | None) -> _Facade:
    x0, x1 = width * rng.uniform(0.12, 0.24), width * rng.uniform(0.76, 0.88)
    if side == 0:
        x0 = -0.08 * width
    elif side == 1:
        x1 = 1.08 * width
    ground = height * rng.uniform(0.8, 0.9)
    return _Facade(width, height, (x0, height * rng.uniform(0.24, 0.38), x1, ground), ground)


def _wall_width(facade: _Facade) -> float:
    return facade.wall[2] - facade.wall[0]


def _palette(rng: np.random.Generator) -> _Palette:
    base = np.array(_STONES[int(rng.integers(len(_STONES)))]) + rng.integers(-12, 13, size=3)
    glass = np.array([38, 48, 70]) + rng.integers(-10, 11, size=3)

    def rgb(a: np.ndarray) -> tuple[int, int, int]:
        return tuple(int(v) for v in np.clip(a, 0, 255))

    return _Palette(rgb(base), rgb(base * 0.45), rgb(base * 1.18 + 10), rgb(glass))


def _background(rng: np.random.Generator, facade: _Facade, palette: _Palette) -> Image.Image:
    """Sky gradient with clouds, ground, a textured wall with masonry courses, maybe a tower."""
    w, h = facade.width, facade.height
    top = np.array([80, 130, 205]) + rng.integers(-15, 16, size=3)
    bottom = np.array([185, 210, 238]) + rng.integers(-10, 11, size=3)
    t = np.linspace(0, 1, h)[:, None, None]
    sky = Image.fromarray(np.broadcast_to(top + (bottom - top) * t, (h, w, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(sky)
    for _ in range(int(rng.integers(1, 4))):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0.03, 0.25) * h, rng.uniform(0.04, 0.08) * w
        for dx in rng.uniform(-1.6, 1.6, size=4):
            shade = int(rng.integers(225, 250))
            draw.ellipse(
                [cx + dx * r - r, cy - r * 0.6, cx + dx * r + r, cy + r * 0.6], fill=(shade,) * 3
            )
    pixels = np.asarray(sky, dtype=np.float32).copy()

    ground = np.array([96, 122, 70] if rng.random() < 0.6 else [128, 122, 110], dtype=np.float32)
    g0 = int(facade.ground)
    pixels[g0:] = ground + rng.normal(0, 10, size=(h - g0, w, 1))

    walls = [facade.wall]
    if rng.random() < 0.5:
        tw = rng.uniform(0.08, 0.12) * w
        x = facade.wall[0] - tw if rng.random() < 0.5 else facade.wall[2]
        walls.append((x, h * rng.uniform(0.04, 0.14), x + tw, facade.ground))
    course = int(rng.integers(7, 12))
    for x0, y0, x1, y1 in walls:
        c0, r0, c1, r1 = max(int(x0), 0), max(int(y0), 0), min(int(x1), w), int(y1)
        if c1 <= c0:
            continue
        texture = rng.normal(0, 9, size=(r1 - r0, c1 - c0, 1))
        texture[(np.arange(r0, r1) % course == 0)] -= 22
        pixels[r0:r1, c0:c1] = np.array(palette.wall) + texture
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for x0, y0, x1, _ in walls[1:]:
        draw.polygon(
            [(x0 - 3, y0), ((x0 + x1) / 2, y0 - (x1 - x0) * 0.6), (x1 + 3, y0)], fill=(70, 70, 78)
        )
    wx0, wy0, wx1, _ = facade.wall
    draw.rectangle([wx0, wy0 - 4, wx1, wy0], fill=palette.dark)
    return image


def _trees(rng: np.random.Generator, draw: ImageDraw.ImageDraw, facade: _Facade) -> None:
    """Non-diagnostic clutter: up to two trees near the wall's corners."""
    corners = (max(facade.wall[0], 0), min(facade.wall[2], facade.width))
    for _ in range(int(rng.integers(0, 3))):
        r = rng.uniform(0.06, 0.1) * facade.width
        cx = corners[int(rng.integers(2))] + rng.uniform(-1, 1) * r
        base = facade.ground + rng.uniform(0, 0.08) * facade.height
        draw.rectangle([cx - r * 0.12, base - r * 1.6, cx + r * 0.12, base], fill=(90, 62, 40))
        green = (int(rng.integers(40, 80)), int(rng.integers(90, 140)), int(rng.integers(40, 70)))
        draw.ellipse([cx - r, base - r * 3.2, cx + r, base - r * 1.3], fill=green)


def _choose_kinds(rng: np.random.Generator, styles: list[str], closeup: bool) -> list[str]:
    """Which diagnostic part kinds to draw: fixed-position ones first, then the wall body.

    A close-up always has a window (its first body part overhangs the image edge).
    """
    kinds: list[str] = []
    for style in styles:
        catalogue = STYLE_PARTS[style]
        n = int(rng.integers(1, len(catalogue) + 1))
        kinds += [catalogue[i] for i in sorted(rng.choice(len(catalogue), n, replace=False))]
    if closeup and not any(k in _BODY for k in kinds):
        kinds.append(STYLE_PARTS[styles[0]][0])
    return sorted(kinds, key=lambda k: k in _BODY)


def _free_spot(
    rng: np.random.Generator,
    facade: _Facade,
    occupied: list[PixelBox],
    w: float,
    aspect: float,
    overhang: int | None = None,
) -> PixelBox | None:
    """A ``w`` x ``w * aspect`` box on the wall body overlapping nothing placed, or None.

    ``overhang`` 0 / 1 puts the box across the image's left / right edge (a close-up).
    """
    h = w * aspect
    x0, y0, x1, _ = facade.wall
    margin = 0.04 * (x1 - x0)
    lowest = facade.ground - margin - h
    if lowest < y0 + margin:
        return None
    for _ in range(40):
        if overhang is None:
            left = rng.uniform(max(x0, 0) + margin, min(x1, facade.width) - margin - w)
        else:
            out = rng.uniform(0.15, 0.35) * w
            left = -out if overhang == 0 else facade.width - w + out
        top = rng.uniform(y0 + margin, lowest)
        box = (left, top, left + w, top + h)
        if not any(_overlaps(box, other) for other in occupied):
            return box
    return None


def _overlaps(a: PixelBox, b: PixelBox, pad: float = 3.0) -> bool:
    return a[0] < b[2] + pad and b[0] < a[2] + pad and a[1] < b[3] + pad and b[1] < a[3] + pad


_BODY = {  # kind -> (width as a fraction of the wall, height / width)
    "Round Arch Window": ((0.1, 0.14), (1.8, 2.4)),
    "Pointed Arch Window": ((0.1, 0.14), (2.1, 2.8)),
    "Rectangular Window": ((0.16, 0.21), (1.2, 1.5)),
    "Oval Window": ((0.12, 0.16), (1.2, 1.5)),
    "Rose Window": ((0.2, 0.28), (1.0, 1.0)),
    "Arcade Gallery": ((0.4, 0.75), (0.16, 0.22)),
}
_REPEATS = {
    "Round Arch Window": 3,
    "Pointed Arch Window": 3,
    "Rectangular Window": 3,
    "Oval Window": 2,
}


def _place(
    rng: np.random.Generator,
    kind: str,
    facade: _Facade,
    occupied: list[PixelBox],
    overhang: int | None,
) -> list[tuple[str, Elements]]:
    """Positions for one kind of part: a list of groups ``(group name, [(feature, box)])``."""
    wx0, wy0, wx1, _ = facade.wall
    ww = min(wx1, facade.width) - max(wx0, 0)
    cx = (max(wx0, 0) + min(wx1, facade.width)) / 2
    boxes: list[PixelBox] = []
    if kind in _BODY:
        (lo, hi), (alo, ahi) = _BODY[kind]
        taken = list(occupied)
        for i in range(int(rng.integers(1, _REPEATS.get(kind, 1) + 1))):
            box = _free_spot(
                rng,
                facade,
                taken,
                rng.uniform(lo, hi) * ww,
                rng.uniform(alo, ahi),
                overhang if i == 0 else None,
            )
            if box is not None:
                boxes.append(box)
                taken.append(box)
    elif kind in ("Triangular Pediment", "Curved Pediment"):
        w = rng.uniform(0.45, 0.8) * ww
        left = cx - w / 2 + rng.uniform(-0.05, 0.05) * ww
        boxes.append((left, wy0 - w * rng.uniform(0.22, 0.32), left + w, wy0 + 2))
    elif kind == "Pinnacle":
        w = rng.uniform(0.035, 0.055) * ww
        n = int(rng.choice([2, 3, 4]))
        for x in np.linspace(max(wx0, 0) + w, min(wx1, facade.width) - 2 * w, n):
            boxes.append((x, wy0 - w * rng.uniform(3.5, 4.5), x + w, wy0 + 2))
    elif kind == "Volute":
        s = rng.uniform(0.1, 0.15) * ww
        boxes += [(wx0 + 2, wy0 + 4, wx0 + 2 + s, wy0 + 4 + 1.4 * s)]
        boxes += [(wx1 - 2 - s, wy0 + 4, wx1 - 2, wy0 + 4 + 1.4 * s)]
    elif kind.endswith("Portal"):
        w = rng.uniform(0.16, 0.24) * ww
        h = w * rng.uniform(1.7, 2.1)
        left = cx - w / 2 + rng.uniform(-0.1, 0.1) * ww
        box = (left, facade.ground - h, left + w, facade.ground)
        if any(_overlaps(box, other) for other in occupied):
            return []
        arch = kind.removesuffix(" Portal")
        spring = box[1] + w * (0.5 if arch == "Round Arch" else 0.87)
        inset = 0.18 * w
        return [
            (
                "Portal",
                [
                    (arch, (box[0], box[1], box[2], spring + 2)),
                    ("Door", (box[0] + inset, spring, box[2] - inset, box[3])),
                ],
            )
        ]
    free = [b for b in boxes if not any(_overlaps(b, other) for other in occupied)]
    return [(kind, [(kind, b)]) for b in free]


def _plain_door(
    rng: np.random.Generator,
    draw: ImageDraw.ImageDraw,
    facade: _Facade,
    palette: _Palette,
    occupied: list[PixelBox],
) -> None:
    """Non-diagnostic clutter: a plain rectangular door, where it fits (marked as occupied)."""
    w = rng.uniform(0.1, 0.16) * _wall_width(facade)
    x0, x1 = max(facade.wall[0], 0), min(facade.wall[2], facade.width)
    cx = x0 + (x1 - x0) * rng.uniform(0.15, 0.85)
    box = (cx - w / 2, facade.ground - 1.8 * w, cx + w / 2, facade.ground)
    if not any(_overlaps(box, other) for other in occupied):
        _door(draw, box, palette)
        occupied.append(box)


def _arched(x0: float, y0: float, x1: float, y1: float, pointed: bool, n: int = 12) -> list:
    """Outline of an arched opening: round (semicircle) or pointed (equilateral) top."""
    w = x1 - x0
    if pointed:
        spring = y0 + w * math.sqrt(3) / 2
        left = [
            (x1 + w * math.cos(t), spring - w * math.sin(t))
            for t in np.linspace(math.pi, 2 * math.pi / 3, n)
        ]
        right = [
            (x0 + w * math.cos(t), spring - w * math.sin(t)) for t in np.linspace(math.pi / 3, 0, n)
        ]
        top = left + right
    else:
        spring, r = y0 + w / 2, w / 2
        top = [
            (x0 + r + r * math.cos(t), spring - r * math.sin(t))
            for t in np.linspace(math.pi, 0, 2 * n)
        ]
    return [(x0, y1), *top, (x1, y1)]


def _inset(box: PixelBox, by: float) -> PixelBox:
    return (box[0] + by, box[1] + by, box[2] - by, box[3] - by)


def _arch_window(draw: ImageDraw.ImageDraw, elements: Elements, p: _Palette) -> None:
    feature, box = elements[0]
    pointed = feature == "Pointed Arch Window"
    frame = max(2.0, (box[2] - box[0]) * 0.16)
    draw.polygon(_arched(*box, pointed), fill=p.dark)
    draw.polygon(_arched(*_inset(box, frame), pointed), fill=p.glass)
    if pointed:
        xm = (box[0] + box[2]) / 2
        draw.line([(xm, box[1] + (box[2] - box[0]) * 0.6), (xm, box[3])], fill=p.light, width=2)


def _rose(draw: ImageDraw.ImageDraw, elements: Elements, p: _Palette) -> None:
    box = elements[0][1]
    r = (box[2] - box[0]) / 2
    cx, cy = box[0] + r, box[1] + r
    draw.ellipse(box, fill=p.dark)
    draw.ellipse(_inset(box, r * 0.12), fill=p.glass)
    for t in np.linspace(0, 2 * math.pi, 12, endpoint=False):
        end = (cx + 0.88 * r * math.cos(t), cy + 0.88 * r * math.sin(t))
        draw.line([(cx, cy), end], fill=p.light, width=2)
    draw.ellipse(_inset(box, r * 0.75), fill=p.light)


def _pinnacle(draw: ImageDraw.ImageDraw, elements: Elements, p: _Palette) -> None:
    x0, y0, x1, y1 = elements[0][1]
    base = y1 - (y1 - y0) * 0.3
    draw.rectangle([x0, base, x1, y1], fill=p.light, outline=p.dark)
    draw.polygon([(x0, base), ((x0 + x1) / 2, y0), (x1, base)], fill=p.light, outline=p.dark)


def _gallery(draw: ImageDraw.ImageDraw, elements: Elements, p: _Palette) -> None:
    x0, y0, x1, y1 = elements[0][1]
    draw.rectangle([x0, y0, x1, y1], fill=p.light)
    n = max(3, int(round((x1 - x0) / (y1 - y0) * 0.9)))
    cell, pad = (x1 - x0) / n, 0.12 * (y1 - y0)
    for i in range(n):
        opening = (x0 + (i + 0.2) * cell, y0 + pad, x0 + (i + 0.8) * cell, y1 - pad)
        draw.polygon(_arched(*opening, pointed=False), fill=p.dark)


def _pediment(draw: ImageDraw.ImageDraw, elements: Elements, p: _Palette) -> None:
    feature, (x0, y0, x1, y1) = elements[0]
    h, xm = y1 - y0, (x0 + x1) / 2
    if feature == "Curved Pediment":
        draw.chord([x0, y0, x1, y0 + 2 * h], 180, 360, fill=p.light, outline=p.dark, width=3)
        draw.chord([x0 + h * 0.3, y0 + h * 0.3, x1 - h * 0.3, y1 + h * 0.7], 180, 360, fill=p.wall)
    else:
        draw.polygon([(x0, y1), (xm, y0), (x1, y1)], fill=p.light, outline=p.dark, width=3)
        inner = [(x0 + h * 0.5, y1 - h * 0.2), (xm, y0 + h * 0.3), (x1 - h * 0.5, y1 - h * 0.2)]
        draw.polygon(inner, fill=p.wall)
    draw.rectangle([x0, y1 - h * 0.15, x1, y1], fill=p.light, outline=p.dark)


def _rectangular_window(draw: ImageDraw.ImageDraw, elements: Elements, p: _Palette) -> None:
    """A window between two pilasters under an entablature."""
    x0, y0, x1, y1 = elements[0][1]
    w, h = x1 - x0, y1 - y0
    pw = w * 0.17
    for px in (x0, x1 - pw):
        draw.rectangle([px, y0 + h * 0.12, px + pw, y1], fill=p.light, outline=p.dark)
    draw.rectangle([x0, y0, x1, y0 + h * 0.12], fill=p.light, outline=p.dark)
    pane = (x0 + pw * 1.5, y0 + h * 0.2, x1 - pw * 1.5, y1 - h * 0.05)
    xm, ym = (pane[0] + pane[2]) / 2, (pane[1] + pane[3]) / 2
    draw.rectangle(pane, fill=p.glass, outline=p.dark, width=2)
    draw.line([(xm, pane[1]), (xm, pane[3])], fill=p.light)
    draw.line([(pane[0], ym), (pane[2], ym)], fill=p.light)


def _oval_window(draw: ImageDraw.ImageDraw, elements: Elements, p: _Palette) -> None:
    box = elements[0][1]
    draw.ellipse(box, fill=p.light, outline=p.dark, width=2)
    draw.ellipse(_inset(box, (box[2] - box[0]) * 0.18), fill=p.glass)


def _volute(draw: ImageDraw.ImageDraw, elements: Elements, p: _Palette) -> None:
    """A scroll: a spiral at the bottom, its tail rising towards the façade's centre line."""
    x0, y0, x1, y1 = elements[0][1]
    s = x1 - x0
    lw = max(2, int(s * 0.08))
    cx, cy = x0 + s / 2, y1 - s / 2
    t = np.linspace(0, 5 * math.pi, 90)
    r = (s / 2 - lw) * (1 - t / (5.8 * math.pi))
    spiral = list(zip(cx - r * np.sin(t), cy - r * np.cos(t), strict=True))
    u = np.linspace(1, 0, 12)[:, None]
    start, control, end = np.array(spiral[0]), np.array([x0, y0]), np.array([x1 - lw, y0 + lw])
    tail = (1 - u) ** 2 * start + 2 * (1 - u) * u * control + u**2 * end
    points = [tuple(q) for q in tail] + spiral
    if (x0 + x1) / 2 > draw.im.size[0] / 2:  # the right-hand volute is the mirror image
        points = [(x0 + x1 - x, y) for x, y in points]
    draw.line(points, fill=p.dark, width=lw, joint="curve")


def _portal(draw: ImageDraw.ImageDraw, elements: Elements, p: _Palette) -> None:
    """Stepped archivolts over a door; the arch element says round or pointed."""
    (arch_feature, arch), (_, door) = elements
    pointed = arch_feature == "Pointed Arch"
    step = (arch[2] - arch[0]) * 0.06
    for i, colour in enumerate((p.light, p.dark, p.light, p.wall)):
        x0, y0, x1, _ = _inset(arch, i * step)
        draw.polygon(_arched(x0, y0, x1, door[3], pointed), fill=colour)
    _door(draw, door, p)


def _door(draw: ImageDraw.ImageDraw, box: PixelBox, p: _Palette) -> None:
    draw.rectangle(box, fill=(96, 64, 42), outline=p.dark, width=2)
    xm = (box[0] + box[2]) / 2
    draw.line([(xm, box[1]), (xm, box[3])], fill=p.dark)


_DRAW = {
    "Round Arch Window": _arch_window,
    "Pointed Arch Window": _arch_window,
    "Rose Window": _rose,
    "Pinnacle": _pinnacle,
    "Arcade Gallery": _gallery,
    "Triangular Pediment": _pediment,
    "Curved Pediment": _pediment,
    "Rectangular Window": _rectangular_window,
    "Oval Window": _oval_window,
    "Volute": _volute,
    "Portal": _portal,
}


# --- Human-attention stand-in (ML Interpretability Benchmark layout) -----------------------

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


def make_human_attention(
    root: str | Path,
    *,
    subjects: tuple[str, ...] = ("dog", "car"),
    per_subject: int = 5,
    seed: int = 0,
    image_size: tuple[int, int] = (320, 256),
) -> Path:
    """Write a deterministic stand-in of the ML Interpretability Benchmark into ``root``.

    ``Image/ImageNet/original_images/<subject><k>.jpg``: a body (an ellipse, its colour by
    subject) with its salient parts (head, wheels, ...) on a cluttered background, where
    distractor blobs sit too. ``.../human_attention_mask/<subject><k>.jpg``: grayscale JPEG,
    the share of ``_ANNOTATORS`` simulated annotators who marked each pixel; each marks
    every salient part as a blurred blob with jittered centre and size, and sometimes a
    distractor (annotator noise). Reused when already made with the same arguments.
    """
    root = Path(root)
    args = {"subjects": list(subjects), "per_subject": per_subject, "seed": seed,
            "image_size": list(image_size)}
    manifest_path = root / MANIFEST
    pairs = [(s, f"{s}{k}.jpg") for s in subjects for k in range(1, per_subject + 1)]
    names = [name for _, name in pairs]
    base = root / "Image" / "ImageNet"
    files = [base / folder / name for folder in ("original_images", "human_attention_mask")
             for name in names]
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text())
        if old.get("version") == VERSION and old.get("args") == args and all(
            f.is_file() for f in files
        ):
            return root
        for name in old.get("files", []):  # another version or size: start afresh
            (root / name).unlink(missing_ok=True)
    elif root.exists() and any(root.iterdir()):
        raise DataError(f"{root} is not empty and was not made by make_human_attention; "
                        "pick an empty folder for the demo data.")
    for folder in ("original_images", "human_attention_mask"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    for index, (subject, name) in enumerate(pairs):
        rng = np.random.default_rng([seed, 3, index])
        image, mask = _attention_scene(rng, subject, image_size)
        image.save(base / "original_images" / name, quality=90)
        mask.save(base / "human_attention_mask" / name, quality=75)
    written = [str(f.relative_to(root)) for f in files]
    _write_json(manifest_path, {"version": VERSION, "args": args, "files": written})
    return root


def _attention_scene(
    rng: np.random.Generator, subject: str, nominal: tuple[int, int]
) -> tuple[Image.Image, Image.Image]:
    """One image and its annotator-averaged attention mask (grayscale, 0..255)."""
    from PIL import ImageFilter

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
