"""Drawing primitives of the synthetic dataset: the shape classes, their fills, textured backgrounds, clutter.

Everything works on float32 RGB canvases ``[H, W, 3]`` in [0, 255] and draws with OpenCV; randomness comes
only from the ``numpy.random.Generator`` passed in, so a seed fixes every pixel.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["CATEGORIES", "shape_polygon", "polygon_mask", "object_fill", "background", "draw_clutter"]

# Category id -> name. The ids are deliberately not contiguous (as in COCO) so the label remapping is exercised.
CATEGORIES: dict[int, str] = {3: "circle", 7: "square", 12: "triangle", 18: "star", 25: "cross"}

_SUBPIXEL_BITS = 4


def shape_polygon(
    name: str, *, center: tuple[float, float], size: float, angle: float = 0.0, aspect: float = 1.0
) -> np.ndarray:
    """Outline of one shape as ``[N, 2]`` float32 ``(x, y)`` pixel points.

    Args:
        name: one of ``CATEGORIES.values()``.
        center: ``(x, y)`` in pixels.
        size: extent of the unrotated shape along x, in pixels.
        angle: rotation in radians (counter-clockwise on screen).
        aspect: height / width stretch of the unrotated shape.
    """
    if name == "circle":
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        points = np.stack([np.cos(t), np.sin(t)], axis=1) * 0.5
    elif name == "square":
        points = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    elif name == "triangle":
        t = -math.pi / 2 + np.arange(3) * 2 * math.pi / 3
        points = np.stack([np.cos(t), np.sin(t)], axis=1) * 0.55
    elif name == "star":
        t = -math.pi / 2 + np.arange(10) * math.pi / 5
        radius = np.where(np.arange(10) % 2 == 0, 0.5, 0.21)
        points = np.stack([np.cos(t) * radius, np.sin(t) * radius], axis=1)
    elif name == "cross":
        a, b = 0.5, 0.17
        points = np.array(
            [[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a], [-b, b], [-a, b], [-a, -b], [-b, -b]]
        )
    else:
        raise ValueError(f"unknown shape {name!r}; choose from {', '.join(CATEGORIES.values())}")
    points = points * np.array([size, size * aspect])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return (points @ rotation.T + np.asarray(center)).astype(np.float32)


def polygon_mask(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """Anti-aliased coverage ``[H, W]`` float32 in [0, 1] of a filled polygon (sub-pixel vertex precision)."""
    mask = np.zeros((height, width), np.uint8)
    points = np.round(polygon * (1 << _SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillPoly(mask, [points], 255, lineType=cv2.LINE_AA, shift=_SUBPIXEL_BITS)
    return mask.astype(np.float32) / 255.0


def random_color(
    rng: np.random.Generator, *, saturation: tuple[float, float], value: tuple[float, float]
) -> np.ndarray:
    """One RGB colour ``[3]`` float32 in [0, 255] with hue uniform and saturation/value in the given ranges."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*saturation) * 255, rng.uniform(*value) * 255]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def object_fill(rng: np.random.Generator, box_xyxy: np.ndarray, height: int, width: int) -> np.ndarray:
    """Paint of one object over the whole canvas ``[H, W, 3]``: solid, a shading gradient, or two-tone stripes.

    Args:
        box_xyxy: ``[4]`` pixel extent of the object, which the gradient and stripes are laid out across.
    """
    color = random_color(rng, saturation=(0.45, 1.0), value=(0.35, 1.0))
    style = rng.choice(["solid", "gradient", "stripes"], p=[0.5, 0.3, 0.2])
    if style == "solid":
        return np.broadcast_to(color, (height, width, 3)).astype(np.float32)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    theta = rng.uniform(0, math.pi)
    span = max(float(box_xyxy[2] - box_xyxy[0]), float(box_xyxy[3] - box_xyxy[1]), 1.0)
    along = ((xs - box_xyxy[0]) * math.cos(theta) + (ys - box_xyxy[1]) * math.sin(theta)) / span
    if style == "gradient":
        shade = 0.65 + 0.5 * np.clip(along, 0, 1)
    else:
        shade = np.where(np.sin(along * 2 * math.pi * rng.uniform(2, 4)) > 0, 1.0, 0.7)
    return np.clip(color[None, None, :] * shade[..., None], 0, 255).astype(np.float32)


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Textured background ``[H, W, 3]``: smooth colour noise plus stripes, a checkerboard or grain."""
    coarse = rng.uniform(40, 215, size=(int(rng.integers(2, 7)), int(rng.integers(2, 7)), 3)).astype(np.float32)
    canvas = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    texture = rng.choice(["plain", "stripes", "checker", "grain"])
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if texture == "stripes":
        theta, period = rng.uniform(0, math.pi), rng.uniform(6, 30)
        wave = np.sin((xs * math.cos(theta) + ys * math.sin(theta)) * 2 * math.pi / period)
        canvas += (wave * rng.uniform(8, 25))[..., None]
    elif texture == "checker":
        cell = rng.uniform(8, 40)
        board = ((np.floor(xs / cell) + np.floor(ys / cell)) % 2) * 2 - 1
        canvas += (board * rng.uniform(6, 20))[..., None]
    elif texture == "grain":
        canvas += rng.normal(0, rng.uniform(6, 14), size=(height, width, 1)).astype(np.float32)
    return np.clip(canvas, 0, 255)


def draw_clutter(rng: np.random.Generator, canvas: np.ndarray, *, count: int) -> None:
    """Draw ``count`` distractors in place: lines, open arcs and specks, none of them a shape class."""
    height, width = canvas.shape[:2]
    scale = min(height, width) / 320
    for _ in range(count):
        color = tuple(float(c) for c in random_color(rng, saturation=(0.0, 0.8), value=(0.2, 0.9)))
        kind = rng.choice(["line", "arc", "speck"], p=[0.45, 0.35, 0.2])
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if kind == "line":
            length, theta = rng.uniform(20, 120) * scale, rng.uniform(0, 2 * math.pi)
            end = (int(x + length * math.cos(theta)), int(y + length * math.sin(theta)))
            cv2.line(canvas, (x, y), end, color, int(rng.integers(1, 3)), cv2.LINE_AA)
        elif kind == "arc":
            axes = (max(int(rng.uniform(8, 50) * scale), 2), max(int(rng.uniform(8, 50) * scale), 2))
            start = rng.uniform(0, 360)
            sweep = rng.uniform(60, 220)
            cv2.ellipse(canvas, (x, y), axes, rng.uniform(0, 180), start, start + sweep, color, 1, cv2.LINE_AA)
        else:
            cv2.circle(canvas, (x, y), max(int(rng.integers(1, 3) * scale), 1), color, -1, cv2.LINE_AA)
