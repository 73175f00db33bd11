"""Drawing the diagnostic parts of a church façade, each in its style's shape and glass tint:
one function per part kind (`_DRAW`) draws a bbox group, so a part's box is exactly its drawn extent."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from PIL import ImageDraw

PixelBox = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
Elements = list[tuple[str, PixelBox]]  # (feature name, box) of one bbox group
# Each style's windows have their own glass tint: part of the diagnostic parts, like their
# shape (every other colour is drawn the same way for all styles).
_GLASS = {
    "Round Arch Window": (40, 52, 80),
    "Pointed Arch Window": (112, 36, 64),
    "Rose Window": (112, 36, 64),
    "Rectangular Window": (58, 92, 78),
    "Oval Window": (140, 112, 44),
}


@dataclass(frozen=True)
class Palette:
    wall: tuple[int, int, int]
    dark: tuple[int, int, int]
    light: tuple[int, int, int]
    glass: tuple[int, int, int]


def draw_parts(draw: ImageDraw.ImageDraw, groups: list[tuple[str, Elements]], palette: Palette) -> None:
    """Draw each bbox group with its kind's function, windows in their style's glass."""
    for group_name, elements in groups:
        glass = _GLASS.get(group_name, palette.glass)
        _DRAW[group_name](draw, elements, dataclasses.replace(palette, glass=glass))


def _arched(x0: float, y0: float, x1: float, y1: float, pointed: bool, n: int = 12) -> list:
    """Outline of an arched opening: round (semicircle) or pointed (equilateral) top."""
    w = x1 - x0
    if pointed:
        spring = y0 + w * math.sqrt(3) / 2
        left = [(x1 + w * math.cos(t), spring - w * math.sin(t))
                for t in np.linspace(math.pi, 2 * math.pi / 3, n)]
        right = [(x0 + w * math.cos(t), spring - w * math.sin(t)) for t in np.linspace(math.pi / 3, 0, n)]
        top = left + right
    else:
        spring, r = y0 + w / 2, w / 2
        top = [(x0 + r + r * math.cos(t), spring - r * math.sin(t)) for t in np.linspace(math.pi, 0, 2 * n)]
    return [(x0, y1), *top, (x1, y1)]


def _inset(box: PixelBox, by: float) -> PixelBox:
    return (box[0] + by, box[1] + by, box[2] - by, box[3] - by)


def _arch_window(draw: ImageDraw.ImageDraw, elements: Elements, p: Palette) -> None:
    feature, box = elements[0]
    pointed = feature == "Pointed Arch Window"
    frame = max(2.0, (box[2] - box[0]) * 0.16)
    draw.polygon(_arched(*box, pointed), fill=p.dark)
    draw.polygon(_arched(*_inset(box, frame), pointed), fill=p.glass)
    if pointed:
        xm = (box[0] + box[2]) / 2
        draw.line([(xm, box[1] + (box[2] - box[0]) * 0.6), (xm, box[3])], fill=p.light, width=2)


def _rose(draw: ImageDraw.ImageDraw, elements: Elements, p: Palette) -> None:
    box = elements[0][1]
    r = (box[2] - box[0]) / 2
    cx, cy = box[0] + r, box[1] + r
    draw.ellipse(box, fill=p.dark)
    draw.ellipse(_inset(box, r * 0.12), fill=p.glass)
    for t in np.linspace(0, 2 * math.pi, 12, endpoint=False):
        end = (cx + 0.88 * r * math.cos(t), cy + 0.88 * r * math.sin(t))
        draw.line([(cx, cy), end], fill=p.light, width=2)
    draw.ellipse(_inset(box, r * 0.75), fill=p.light)


def _pinnacle(draw: ImageDraw.ImageDraw, elements: Elements, p: Palette) -> None:
    x0, y0, x1, y1 = elements[0][1]
    base = y1 - (y1 - y0) * 0.3
    draw.rectangle([x0, base, x1, y1], fill=p.light, outline=p.dark)
    draw.polygon([(x0, base), ((x0 + x1) / 2, y0), (x1, base)], fill=p.light, outline=p.dark)


def _gallery(draw: ImageDraw.ImageDraw, elements: Elements, p: Palette) -> None:
    x0, y0, x1, y1 = elements[0][1]
    draw.rectangle([x0, y0, x1, y1], fill=p.light)
    n = max(3, int(round((x1 - x0) / (y1 - y0) * 0.9)))
    cell, pad = (x1 - x0) / n, 0.12 * (y1 - y0)
    for i in range(n):
        opening = (x0 + (i + 0.2) * cell, y0 + pad, x0 + (i + 0.8) * cell, y1 - pad)
        draw.polygon(_arched(*opening, pointed=False), fill=p.dark)


def _pediment(draw: ImageDraw.ImageDraw, elements: Elements, p: Palette) -> None:
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


def _rectangular_window(draw: ImageDraw.ImageDraw, elements: Elements, p: Palette) -> None:
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


def _oval_window(draw: ImageDraw.ImageDraw, elements: Elements, p: Palette) -> None:
    box = elements[0][1]
    draw.ellipse(box, fill=p.light, outline=p.dark, width=2)
    draw.ellipse(_inset(box, (box[2] - box[0]) * 0.18), fill=p.glass)


def _volute(draw: ImageDraw.ImageDraw, elements: Elements, p: Palette) -> None:
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


def _portal(draw: ImageDraw.ImageDraw, elements: Elements, p: Palette) -> None:
    """Stepped archivolts over a door; the arch element says round or pointed."""
    (arch_feature, arch), (_, door) = elements
    pointed = arch_feature == "Pointed Arch"
    step = (arch[2] - arch[0]) * 0.06
    for i, colour in enumerate((p.light, p.dark, p.light, p.wall)):
        x0, y0, x1, _ = _inset(arch, i * step)
        draw.polygon(_arched(x0, y0, x1, door[3], pointed), fill=colour)
    draw_door(draw, door, p)


def draw_door(draw: ImageDraw.ImageDraw, box: PixelBox, p: Palette) -> None:
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
