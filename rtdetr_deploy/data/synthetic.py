"""The embedded default: a synthetic COCO-format detection set and a video, generated deterministically from a seed.

Layout written under the root folder, read by every tool like user data::

    images/train/000000000001.jpg ...    images named by their COCO image id
    images/val/000000000001.jpg ...
    annotations/instances_train.json     COCO detection format (bbox x, y, w, h in pixels; area; iscrowd)
    annotations/instances_val.json
    annotations/instances_video.json     ground truth of the video, image id = frame index from 0
    video.mp4                            moving shapes over a textured background
    synthetic.json                       the generation parameters; written last, marks a complete set

Five shape classes with non-contiguous category ids (``CATEGORIES``) on textured, cluttered backgrounds; objects
from about 12 px to half the image, partially occluding each other (each stays at least half visible, and its
box is the extent of its visible pixels, as in COCO), a few crowd regions (``iscrowd=1``) and a few empty images.

Run ``python -m rtdetr_deploy.data OUT`` to write a copy anywhere.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..atomic import atomic_path
from ..cache import cache_dir
from .shapes import CATEGORIES, background, draw_clutter, object_fill, polygon_mask, shape_polygon

__all__ = ["SyntheticConfig", "SyntheticPaths", "default_root", "ensure_synthetic", "generate_synthetic"]

VERSION = 1
EMPTY_PROB = 0.05
CROWD_PROB = 0.06
MIN_VISIBLE = 0.5
_SPLIT_CODES = {"train": 1, "val": 2, "video": 3}


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate.

    Attributes:
        seed: fixes every pixel and annotation.
        num_train: training images.
        num_val: validation images.
        image_size: short side of the images in pixels (about a third are 4:3 landscape, the rest square).
        video_frames: frames of the video at 25 fps (0: no video).
        max_objects: most objects per image.
    """

    seed: int = 0
    num_train: int = 800
    num_val: int = 100
    image_size: int = 320
    video_frames: int = 100
    max_objects: int = 8

    def __post_init__(self) -> None:
        if self.num_train < 1 or self.num_val < 1:
            raise ValueError(f"num_train and num_val must be positive, got {self.num_train}, {self.num_val}")
        if self.image_size < 64:
            raise ValueError(f"image_size must be at least 64 pixels, got {self.image_size}")
        if self.video_frames < 0 or self.max_objects < 1:
            raise ValueError(
                f"video_frames must be >= 0 and max_objects >= 1, got {self.video_frames}, {self.max_objects}"
            )


@dataclass(frozen=True)
class SyntheticPaths:
    """Where the generated files are."""

    root: Path
    train_images: Path
    train_annotations: Path
    val_images: Path
    val_annotations: Path
    video: Path | None
    video_annotations: Path | None

    @classmethod
    def under(cls, root: Path, *, video: bool = True) -> SyntheticPaths:
        """The layout under ``root``; ``video=False`` for sets generated without one."""
        ann = root / "annotations"
        return cls(
            root=root,
            train_images=root / "images" / "train",
            train_annotations=ann / "instances_train.json",
            val_images=root / "images" / "val",
            val_annotations=ann / "instances_val.json",
            video=root / "video.mp4" if video else None,
            video_annotations=ann / "instances_video.json" if video else None,
        )


def default_root(config: SyntheticConfig) -> Path:
    """Cache folder for ``config``, inside the package's cache folder (see ``cache.cache_dir``)."""
    c = config
    name = f"v{VERSION}-seed{c.seed}-{c.num_train}x{c.num_val}-{c.image_size}px-{c.video_frames}f-{c.max_objects}o"
    return cache_dir() / "synthetic" / name


def ensure_synthetic(
    root: str | os.PathLike[str] | None = None, config: SyntheticConfig | None = None
) -> SyntheticPaths:
    """The synthetic set in ``root`` (default: the cache folder), generated first unless already complete there."""
    config = config or SyntheticConfig()
    root = Path(root) if root is not None else default_root(config)
    manifest = root / "synthetic.json"
    if manifest.is_file():
        try:
            recorded = json.loads(manifest.read_text())
        except (OSError, ValueError):
            recorded = None
        if recorded == {"version": VERSION, **asdict(config)}:
            return SyntheticPaths.under(root, video=config.video_frames > 0)
    return generate_synthetic(root, config)


def generate_synthetic(root: str | os.PathLike[str], config: SyntheticConfig | None = None) -> SyntheticPaths:
    """Write the synthetic set into ``root`` (every file atomically; the manifest last)."""
    config = config or SyntheticConfig()
    paths = SyntheticPaths.under(Path(root), video=config.video_frames > 0)
    # Until the new manifest is written, the folder must not pass for a complete set of any configuration.
    (paths.root / "synthetic.json").unlink(missing_ok=True)
    for split, folder, annotation_file, count in (
        ("train", paths.train_images, paths.train_annotations, config.num_train),
        ("val", paths.val_images, paths.val_annotations, config.num_val),
    ):
        _write_split(split, folder, annotation_file, count, config)
    if config.video_frames > 0:
        _write_video(paths.video, paths.video_annotations, config)
    with atomic_path(paths.root / "synthetic.json") as tmp:
        tmp.write_text(json.dumps({"version": VERSION, **asdict(config)}, indent=1))
    return paths


def _write_split(split: str, folder: Path, annotation_file: Path, count: int, config: SyntheticConfig) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, count + 1):
        rng = np.random.default_rng([config.seed, _SPLIT_CODES[split], image_id])
        short = config.image_size
        height, width = (short, short) if rng.random() < 0.7 else (short, int(round(short * 4 / 3)))
        image, objects = render_image(rng, height, width, max_objects=config.max_objects)
        file_name = f"{image_id:012d}.jpg"
        _write_jpeg(folder / file_name, image)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for obj in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **obj})
    _write_coco(annotation_file, images, annotations, description=f"rtdetr-deploy synthetic shapes, {split} split")


def _write_coco(path: Path, images: list[dict], annotations: list[dict], *, description: str) -> None:
    coco = {
        "info": {"description": description, "version": str(VERSION)},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name, "supercategory": "shape"} for cid, name in CATEGORIES.items()],
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(coco))


def _write_jpeg(path: Path, image_rgb: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise OSError(f"OpenCV could not encode {path.name} as JPEG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


@dataclass
class _Placed:
    category_id: int
    coverage: np.ndarray
    visible: np.ndarray
    full_area: float
    box_xyxy: np.ndarray


def render_image(
    rng: np.random.Generator, height: int, width: int, *, max_objects: int = 8
) -> tuple[np.ndarray, list[dict]]:
    """One scene: ``[H, W, 3]`` uint8 RGB image and its COCO annotations (without ``id``/``image_id``)."""
    canvas = background(rng, height, width)
    draw_clutter(rng, canvas, count=int(rng.integers(0, 16)))
    annotations = []
    if rng.random() < CROWD_PROB:
        annotations.append(_draw_crowd(rng, canvas))
    count = 0 if rng.random() < EMPTY_PROB else int(rng.integers(1, max_objects + 1))
    placed = _place_objects(rng, height, width, count=count)
    for obj in placed:
        alpha = obj.coverage[..., None]
        canvas[:] = canvas * (1 - alpha) + object_fill(rng, obj.box_xyxy, height, width) * alpha
    for obj in placed:
        ys, xs = np.nonzero(obj.visible)
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        bbox = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
        annotations.append({"category_id": obj.category_id, "bbox": bbox, "area": float(len(xs)), "iscrowd": 0})
    return _finish(rng, canvas), annotations


def _place_objects(rng: np.random.Generator, height: int, width: int, *, count: int) -> list[_Placed]:
    """Up to ``count`` objects, drawn in list order; each stays at least ``MIN_VISIBLE`` visible."""
    short = min(height, width)
    placed: list[_Placed] = []
    for _ in range(count):
        for _attempt in range(10):
            category_id = int(rng.choice(list(CATEGORIES)))
            size = math.exp(rng.uniform(math.log(short * 0.04), math.log(short * 0.55)))
            center = (rng.uniform(-0.1, 1.1) * width, rng.uniform(-0.1, 1.1) * height)
            polygon = shape_polygon(
                CATEGORIES[category_id],
                center=center,
                size=size,
                angle=rng.uniform(0, 2 * math.pi),
                aspect=math.exp(rng.uniform(-0.2, 0.2)),
            )
            coverage = polygon_mask(polygon, height, width)
            solid = coverage > 0.5
            full_area = float(cv2.contourArea(polygon))
            if solid.sum() < max(MIN_VISIBLE * full_area, 40):
                continue
            if any((p.visible & ~solid).sum() < MIN_VISIBLE * p.full_area for p in placed):
                continue
            for p in placed:
                p.visible &= ~solid
            box = np.concatenate([polygon.min(0), polygon.max(0)])
            placed.append(_Placed(category_id, coverage, solid, full_area, box))
            break
    return placed


def _draw_crowd(rng: np.random.Generator, canvas: np.ndarray) -> dict:
    """A cluster of many tiny shapes of one class, annotated as one ``iscrowd=1`` region."""
    height, width = canvas.shape[:2]
    short = min(height, width)
    category_id = int(rng.choice(list(CATEGORIES)))
    region_w, region_h = rng.uniform(0.12, 0.28, size=2) * short
    x0, y0 = rng.uniform(0, width - region_w), rng.uniform(0, height - region_h)
    covered = np.zeros((height, width), bool)
    color = object_fill(rng, np.array([x0, y0, x0 + region_w, y0 + region_h]), height, width)
    for _ in range(int(rng.integers(8, 15))):
        size = rng.uniform(0.02, 0.035) * short
        center = (x0 + rng.uniform(0, region_w), y0 + rng.uniform(0, region_h))
        polygon = shape_polygon(CATEGORIES[category_id], center=center, size=size, angle=rng.uniform(0, 2 * math.pi))
        coverage = polygon_mask(polygon, height, width)[..., None]
        canvas[:] = canvas * (1 - coverage) + color * coverage
        covered |= coverage[..., 0] > 0.5
    ys, xs = np.nonzero(covered)
    x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    bbox = [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]
    return {"category_id": category_id, "bbox": bbox, "area": float(len(xs)), "iscrowd": 1}


def _finish(rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
    """Camera-like degradations: an occasional slight blur, then sensor noise; to uint8."""
    if rng.random() < 0.3:
        canvas = cv2.GaussianBlur(canvas, (3, 3), 0)
    canvas = canvas + rng.normal(0, rng.uniform(2, 6), size=canvas.shape).astype(np.float32)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def _write_video(path: Path, annotation_file: Path, config: SyntheticConfig) -> None:
    """Shapes moving and spinning over a static background, bouncing off the borders, at 25 fps."""
    rng = np.random.default_rng([config.seed, _SPLIT_CODES["video"]])
    height, width = config.image_size, int(round(config.image_size * 1.5 / 2)) * 2
    scene = background(rng, height, width)
    draw_clutter(rng, scene, count=10)
    movers = []
    for _ in range(6):
        size = rng.uniform(0.08, 0.3) * height
        movers.append(
            {
                "category_id": int(rng.choice(list(CATEGORIES))),
                "size": size,
                "pos": rng.uniform([size, size], [width - size, height - size]),
                "vel": rng.uniform(-1, 1, size=2) * height / 80,
                "angle": rng.uniform(0, 2 * math.pi),
                "spin": rng.uniform(-0.05, 0.05),
                "fill": object_fill(rng, np.array([0, 0, width, height]), height, width),
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (width, height))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write MPEG-4 video to {tmp}")
    images, annotations = [], []
    try:
        for frame_index in range(config.video_frames):
            canvas, visible = scene.copy(), []
            for mover in movers:
                polygon = shape_polygon(
                    CATEGORIES[mover["category_id"]],
                    center=tuple(mover["pos"]),
                    size=mover["size"],
                    angle=mover["angle"],
                )
                coverage = polygon_mask(polygon, height, width)
                canvas[:] = canvas * (1 - coverage[..., None]) + mover["fill"] * coverage[..., None]
                solid = coverage > 0.5
                visible = [(cid, mask & ~solid) for cid, mask in visible] + [(mover["category_id"], solid)]
                _move(mover, width, height)
            writer.write(cv2.cvtColor(_finish(rng, canvas), cv2.COLOR_RGB2BGR))
            images.append(
                {"id": frame_index, "file_name": f"frame_{frame_index:06d}", "width": width, "height": height}
            )
            for category_id, mask in visible:
                ys, xs = np.nonzero(mask)
                if len(xs) < 40:
                    continue
                x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
                bbox = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
                ann = {"category_id": category_id, "bbox": bbox, "area": float(len(xs)), "iscrowd": 0}
                annotations.append({"id": len(annotations) + 1, "image_id": frame_index, **ann})
    finally:
        writer.release()
    os.replace(tmp, path)
    _write_coco(annotation_file, images, annotations, description="rtdetr-deploy synthetic shapes, video frames")


def _move(mover: dict, width: int, height: int) -> None:
    mover["pos"] = mover["pos"] + mover["vel"]
    mover["angle"] += mover["spin"]
    half = mover["size"] / 2
    for axis, limit in ((0, width), (1, height)):
        if not half <= mover["pos"][axis] <= limit - half:
            mover["vel"][axis] = -mover["vel"][axis]
            mover["pos"][axis] = float(np.clip(mover["pos"][axis], half, limit - half))
