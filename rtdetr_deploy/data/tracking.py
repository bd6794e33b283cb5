"""Tracking sequences with identities: moving, crossing and briefly occluded shapes, in MOTChallenge layout.

Each sequence is a folder ``SEQ/`` with ``seqinfo.ini``, the frames ``img1/000001.jpg ...`` and the ground truth
``gt/gt.txt`` (see ``rtdetr_deploy.mot``). Shapes of the five synthetic classes move at constant velocities,
bounce off the borders and pass over each other (the later-drawn one hides the earlier); a pillar of background
texture stands in the scene, and shapes passing behind it disappear for a few frames. A ground-truth box is the
extent of the object's visible pixels, as in the detection set; an object with fewer than ``MIN_VISIBLE_PIXELS``
visible pixels has no row in that frame (it is hidden), one less than a quarter visible is a distractor row (see
``rtdetr_deploy.mot``), and an object keeps its identity when it reappears.

Run ``python -m rtdetr_deploy.data.tracking OUT`` to write the default sequences.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..atomic import atomic_path
from ..mot import gt_row, seqinfo_text
from .shapes import CATEGORIES, background, draw_clutter, object_fill, polygon_mask, shape_polygon

__all__ = ["TrackingSequenceConfig", "MIN_VISIBLE_PIXELS", "generate_tracking_sequence", "render_sequence"]

MIN_VISIBLE_PIXELS = 40
_CODE = 4


@dataclass(frozen=True)
class TrackingSequenceConfig:
    """One sequence to generate.

    Attributes:
        seed: fixes every pixel and every path.
        frames: sequence length.
        objects: moving shapes (identities 1..objects).
        size_hw: ``(height, width)`` of the frames.
        frame_rate: frames per second written into ``seqinfo.ini``.
        occluder: draw the pillar that hides shapes passing behind it.
    """

    seed: int = 0
    frames: int = 150
    objects: int = 6
    size_hw: tuple[int, int] = (320, 480)
    frame_rate: float = 25.0
    occluder: bool = True

    def __post_init__(self) -> None:
        if self.frames < 2 or self.objects < 1:
            raise ValueError(f"frames must be >= 2 and objects >= 1, got {self.frames}, {self.objects}")
        if min(self.size_hw) < 64:
            raise ValueError(f"frames must be at least 64x64 pixels, got {self.size_hw}")


@dataclass
class _Mover:
    category_id: int
    size: float
    pos: np.ndarray
    vel: np.ndarray
    angle: float
    spin: float
    fill: np.ndarray


def _movers(rng: np.random.Generator, config: TrackingSequenceConfig) -> list[_Mover]:
    """Shapes starting around the border and heading through the middle, so their paths cross."""
    height, width = config.size_hw
    movers = []
    for index in range(config.objects):
        size = rng.uniform(0.13, 0.24) * height
        side = rng.uniform(0, 2 * math.pi) + index * 2 * math.pi / config.objects
        start = np.array([width / 2 + math.cos(side) * width * 0.35, height / 2 + math.sin(side) * height * 0.32])
        target = np.array([width / 2, height / 2]) + rng.uniform(-0.15, 0.15, 2) * height
        speed = rng.uniform(0.006, 0.014) * height
        direction = (target - start) / max(float(np.linalg.norm(target - start)), 1e-6)
        category_id = int(list(CATEGORIES)[index % len(CATEGORIES)])
        box = np.array([0, 0, width, height], np.float32)
        movers.append(
            _Mover(
                category_id=category_id,
                size=size,
                pos=start,
                vel=direction * speed,
                angle=rng.uniform(0, 2 * math.pi),
                spin=rng.uniform(-0.03, 0.03),
                fill=object_fill(rng, box, height, width),
            )
        )
    return movers


def _step(mover: _Mover, width: int, height: int) -> None:
    mover.pos = mover.pos + mover.vel
    mover.angle += mover.spin
    half = mover.size / 2
    for axis, limit in ((0, width), (1, height)):
        if not half <= mover.pos[axis] <= limit - half:
            mover.vel[axis] = -mover.vel[axis]
            mover.pos[axis] = float(np.clip(mover.pos[axis], half, limit - half))


def render_sequence(
    config: TrackingSequenceConfig,
) -> tuple[list[np.ndarray], list[list[tuple[int, list[float], float]]]]:
    """Frames and ground truth of one sequence.

    Returns:
        ``frames``: ``[H, W, 3]`` uint8 RGB images; ``truth``: per frame, ``(object_id, [x, y, w, h], visibility)``
        of each object with at least ``MIN_VISIBLE_PIXELS`` visible pixels (box: visible extent in pixels).
    """
    rng = np.random.default_rng([config.seed, _CODE])
    height, width = config.size_hw
    scene = background(rng, height, width)
    draw_clutter(rng, scene, count=8)
    movers = _movers(rng, config)
    pillar = np.zeros((height, width), bool)
    if config.occluder:
        x0 = int(rng.uniform(0.3, 0.6) * width)
        pillar[:, x0 : x0 + max(int(0.05 * width), 8)] = True
    frames, truth = [], []
    for _ in range(config.frames):
        canvas, visible = scene.copy(), []
        for object_id, mover in enumerate(movers, start=1):
            name = CATEGORIES[mover.category_id]
            polygon = shape_polygon(name, center=tuple(mover.pos), size=mover.size, angle=mover.angle)
            coverage = polygon_mask(polygon, height, width)
            canvas[:] = canvas * (1 - coverage[..., None]) + mover.fill * coverage[..., None]
            solid = coverage > 0.5
            visible = [(oid, mask & ~solid, area) for oid, mask, area in visible]
            visible.append((object_id, solid.copy(), max(float(cv2.contourArea(polygon)), 1.0)))
            _step(mover, width, height)
        canvas[pillar] = scene[pillar]
        rows = []
        for object_id, mask, area in visible:
            ys, xs = np.nonzero(mask & ~pillar)
            if len(xs) < MIN_VISIBLE_PIXELS:
                continue
            x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
            rows.append((object_id, [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], min(len(xs) / area, 1.0)))
        noisy = canvas + rng.normal(0, 3, size=canvas.shape).astype(np.float32)
        frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
        truth.append(sorted(rows))
    return frames, truth


def generate_tracking_sequence(root: str | Path, name: str, config: TrackingSequenceConfig | None = None) -> Path:
    """Write one sequence into ``root/name`` (frames, ``gt/gt.txt``, ``seqinfo.ini`` last); returns its folder."""
    config = config or TrackingSequenceConfig()
    folder = Path(root) / name
    (folder / "seqinfo.ini").unlink(missing_ok=True)
    frames, truth = render_sequence(config)
    (folder / "img1").mkdir(parents=True, exist_ok=True)
    (folder / "gt").mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames, start=1):
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            raise OSError(f"OpenCV could not encode frame {index} as JPEG")
        with atomic_path(folder / "img1" / f"{index:06d}.jpg") as tmp:
            tmp.write_bytes(encoded.tobytes())
    lines = [gt_row(i, oid, box, visibility=vis) for i, rows in enumerate(truth, start=1) for oid, box, vis in rows]
    with atomic_path(folder / "gt" / "gt.txt") as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    height, width = config.size_hw
    info = seqinfo_text(name=name, frames=config.frames, frame_rate=config.frame_rate, size_wh=(width, height))
    with atomic_path(folder / "seqinfo.ini") as tmp:
        tmp.write_text(info, encoding="utf-8")
    return folder


def main(argv: list[str] | None = None) -> int:
    """``python -m rtdetr_deploy.data.tracking OUT [--sequences N]``: write sequences ``synth-01 ...``."""
    parser = argparse.ArgumentParser(prog="python -m rtdetr_deploy.data.tracking", description=main.__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--sequences", type=int, default=1)
    parser.add_argument("--frames", type=int, default=TrackingSequenceConfig.frames)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        for index in range(args.sequences):
            config = TrackingSequenceConfig(seed=args.seed + index, frames=args.frames)
            print(generate_tracking_sequence(args.out, f"synth-{index + 1:02d}", config))
    except (OSError, ValueError) as exc:
        print(f"python -m rtdetr_deploy.data.tracking: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
