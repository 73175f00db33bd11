"""A synthetic church façade and the boxes of its diagnostic parts.

Each image is a small church façade carrying the *diagnostic parts* of its style
(`STYLE_PARTS`). Everything else (sky, clouds, ground, wall and its outline, tower, trees, a
plain door, plaques, colours, brightness, aspect ratio) is drawn first, from the same
distributions for every style, and the parts are placed around it; so the style is
recoverable only from the parts. ``parts=False`` renders the same images with the parts left
out: a classifier trained on those stays at chance (the positive control's twin).

The expert boxes are exactly the drawn extents of the diagnostic parts; in "close-up" shots
one part runs off the image edge, so its box runs past ``[0, 1]`` as a few real boxes do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .parts import Elements, Palette, PixelBox, draw_door, draw_parts

FEATURES = ["Round Arch Window", "Arcade Gallery", "Round Arch", "Pointed Arch Window",
            "Rose Window", "Pinnacle", "Pointed Arch", "Triangular Pediment", "Rectangular Window",
            "Volute", "Curved Pediment", "Oval Window", "Door", "Portal"]
# Per style QID, the kinds of diagnostic part it draws; the first is always a window.
STYLE_PARTS = {
    "Q46261": ("Round Arch Window", "Arcade Gallery", "Round Arch Portal"),  # Romanesque
    "Q176483": ("Pointed Arch Window", "Rose Window", "Pinnacle", "Pointed Arch Portal"),  # Gothic
    "Q236122": ("Rectangular Window", "Triangular Pediment"),  # Renaissance: windows between pilasters
    "Q840829": ("Oval Window", "Volute", "Curved Pediment"),  # Baroque
}
_MAX_BOXES = 8
_STONES = ((196, 178, 150), (172, 170, 162), (176, 112, 92), (214, 204, 184), (150, 140, 128))


@dataclass(frozen=True)
class _Facade:
    width: int
    height: int
    wall: PixelBox
    ground: float


def render(rng: np.random.Generator, styles: list[str], size: tuple[int, int],
           closeup: bool = False, parts: bool = True) -> tuple[Image.Image, list[tuple[str, Elements]]]:
    """One façade image and its parts as ``(group feature, [(feature, pixel box), ...])``;
    ``parts=False`` leaves them undrawn (same random stream: all else pixel for pixel equal)."""
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
        plaque = _free_spot(rng, facade, occupied, rng.uniform(0.05, 0.1) * _wall_width(facade), 0.7)
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
        draw_parts(draw, groups, palette)

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


def _palette(rng: np.random.Generator) -> Palette:
    base = np.array(_STONES[int(rng.integers(len(_STONES)))]) + rng.integers(-12, 13, size=3)
    glass = np.array([38, 48, 70]) + rng.integers(-10, 11, size=3)

    def rgb(a: np.ndarray) -> tuple[int, int, int]:
        return tuple(int(v) for v in np.clip(a, 0, 255))

    return Palette(rgb(base), rgb(base * 0.45), rgb(base * 1.18 + 10), rgb(glass))


def _background(rng: np.random.Generator, facade: _Facade, palette: Palette) -> Image.Image:
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
            draw.ellipse([cx + dx * r - r, cy - r * 0.6, cx + dx * r + r, cy + r * 0.6], fill=(shade,) * 3)
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
        draw.polygon([(x0 - 3, y0), ((x0 + x1) / 2, y0 - (x1 - x0) * 0.6), (x1 + 3, y0)], fill=(70, 70, 78))
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
    """Which diagnostic part kinds to draw: fixed-position ones first, then the wall body
    (a close-up always has a window: its first body part overhangs the image edge)."""
    kinds: list[str] = []
    for style in styles:
        catalogue = STYLE_PARTS[style]
        n = int(rng.integers(1, len(catalogue) + 1))
        kinds += [catalogue[i] for i in sorted(rng.choice(len(catalogue), n, replace=False))]
    if closeup and not any(k in _BODY for k in kinds):
        kinds.append(STYLE_PARTS[styles[0]][0])
    return sorted(kinds, key=lambda k: k in _BODY)


def _free_spot(rng: np.random.Generator, facade: _Facade, occupied: list[PixelBox], w: float,
               aspect: float, overhang: int | None = None) -> PixelBox | None:
    """A ``w`` x ``w * aspect`` box on the wall body overlapping nothing placed, or None;
    ``overhang`` 0 / 1 puts it across the image's left / right edge (a close-up)."""
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


_BODY = {  # kind -> (width as a fraction of the wall, height / width, at most how many)
    "Round Arch Window": ((0.1, 0.14), (1.8, 2.4), 3),
    "Pointed Arch Window": ((0.1, 0.14), (2.1, 2.8), 3),
    "Rectangular Window": ((0.16, 0.21), (1.2, 1.5), 3),
    "Oval Window": ((0.12, 0.16), (1.2, 1.5), 2),
    "Rose Window": ((0.2, 0.28), (1.0, 1.0), 1),
    "Arcade Gallery": ((0.4, 0.75), (0.16, 0.22), 1),
}


def _place(rng: np.random.Generator, kind: str, facade: _Facade, occupied: list[PixelBox],
           overhang: int | None) -> list[tuple[str, Elements]]:
    """Positions for one kind of part: a list of groups ``(group name, [(feature, box)])``."""
    wx0, wy0, wx1, _ = facade.wall
    ww = min(wx1, facade.width) - max(wx0, 0)
    cx = (max(wx0, 0) + min(wx1, facade.width)) / 2
    boxes: list[PixelBox] = []
    if kind in _BODY:
        (lo, hi), (alo, ahi), repeats = _BODY[kind]
        taken = list(occupied)
        for i in range(int(rng.integers(1, repeats + 1))):
            box = _free_spot(rng, facade, taken, rng.uniform(lo, hi) * ww, rng.uniform(alo, ahi),
                             overhang if i == 0 else None)
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
        return [("Portal", [(arch, (box[0], box[1], box[2], spring + 2)),
                            ("Door", (box[0] + inset, spring, box[2] - inset, box[3]))])]
    free = [b for b in boxes if not any(_overlaps(b, other) for other in occupied)]
    return [(kind, [(kind, b)]) for b in free]


def _plain_door(rng: np.random.Generator, draw: ImageDraw.ImageDraw, facade: _Facade,
                palette: Palette, occupied: list[PixelBox]) -> None:
    """Non-diagnostic clutter: a plain rectangular door, where it fits (marked as occupied)."""
    w = rng.uniform(0.1, 0.16) * _wall_width(facade)
    x0, x1 = max(facade.wall[0], 0), min(facade.wall[2], facade.width)
    cx = x0 + (x1 - x0) * rng.uniform(0.15, 0.85)
    box = (cx - w / 2, facade.ground - 1.8 * w, cx + w / 2, facade.ground)
    if not any(_overlaps(box, other) for other in occupied):
        draw_door(draw, box, palette)
        occupied.append(box)

