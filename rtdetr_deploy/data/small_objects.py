"""A large-image, small-object split of the synthetic shapes, for sliced inference (COCO format).

Images of ``image_size`` pixels square (default 1024, four times the side the synthetic set is drawn at) hold
many shapes of 12 to 40 pixels (most below COCO's 32 x 32 "small" area) and a few of 40 to 90 pixels, on the
same textured, cluttered backgrounds as the detection set; shapes do not overlap. Whole-image inference shrinks
such an image to the model's input (a 20-pixel shape becomes 5 pixels at 256), which is what slicing is for.

Layout: ``images/val/000000000001.jpg ...`` and ``annotations/instances_val.json``; ``small_objects.json`` (the
parameters) is written last and marks a complete set.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..atomic import atomic_path
from ..cache import cache_dir
from .shapes import CATEGORIES, background, draw_clutter, object_fill, polygon_mask, shape_polygon

__all__ = ["SmallObjectsConfig", "ensure_small_objects", "generate_small_objects"]

VERSION = 1
_CODE = 5


@dataclass(frozen=True)
class SmallObjectsConfig:
    """What to generate.

    Attributes:
        seed: fixes every pixel.
        num_images: images in the split.
        image_size: side of the square images in pixels.
        objects: ``(min, max)`` shapes per image.
    """

    seed: int = 0
    num_images: int = 24
    image_size: int = 1024
    objects: tuple[int, int] = (10, 24)

    def __post_init__(self) -> None:
        if self.num_images < 1 or self.image_size < 256 or not 1 <= self.objects[0] <= self.objects[1]:
            raise ValueError(f"invalid small-object split settings: {self}")


def ensure_small_objects(root: str | os.PathLike[str] | None = None, config: SmallObjectsConfig | None = None) -> Path:
    """The split's folder (default: in the package cache), generated first unless already complete there."""
    config = config or SmallObjectsConfig()
    c = config
    name = f"v{VERSION}-seed{c.seed}-{c.num_images}x{c.image_size}px-{c.objects[0]}-{c.objects[1]}o"
    root = Path(root) if root is not None else cache_dir() / "small_objects" / name
    manifest = root / "small_objects.json"
    try:
        if json.loads(manifest.read_text()) == {"version": VERSION, **json.loads(json.dumps(asdict(config)))}:
            return root
    except (OSError, ValueError):
        pass
    return generate_small_objects(root, config)


def _render(rng: np.random.Generator, size: int, count: int) -> tuple[np.ndarray, list[dict]]:
    canvas = background(rng, size, size)
    draw_clutter(rng, canvas, count=int(rng.integers(10, 40)))
    boxes: list[np.ndarray] = []
    annotations = []
    for _ in range(count):
        for _attempt in range(20):
            side = rng.uniform(12, 40) if rng.random() < 0.8 else rng.uniform(40, 90)
            center = rng.uniform(side, size - side, 2)
            category_id = int(rng.choice(list(CATEGORIES)))
            polygon = shape_polygon(CATEGORIES[category_id], center=tuple(center), size=side, angle=rng.uniform(0, 6.3))
            box = np.concatenate([polygon.min(0), polygon.max(0)])
            if any(box[0] < b[2] + 4 and b[0] < box[2] + 4 and box[1] < b[3] + 4 and b[1] < box[3] + 4 for b in boxes):
                continue
            coverage = polygon_mask(polygon, size, size)
            ys, xs = np.nonzero(coverage > 0.5)
            if len(xs) < 20:
                continue
            canvas[:] = canvas * (1 - coverage[..., None]) + object_fill(rng, box, size, size) * coverage[..., None]
            x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
            bbox = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
            annotations.append({"category_id": category_id, "bbox": bbox, "area": float(len(xs)), "iscrowd": 0})
            boxes.append(box)
            break
    canvas = canvas + rng.normal(0, 3, size=canvas.shape).astype(np.float32)
    return np.clip(canvas, 0, 255).astype(np.uint8), annotations


def generate_small_objects(root: str | os.PathLike[str], config: SmallObjectsConfig | None = None) -> Path:
    """Write the split into ``root`` (every file atomically, the manifest last); returns ``root``."""
    config = config or SmallObjectsConfig()
    root = Path(root)
    (root / "small_objects.json").unlink(missing_ok=True)
    folder = root / "images" / "val"
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, config.num_images + 1):
        rng = np.random.default_rng([config.seed, _CODE, image_id])
        image, objects = _render(rng, config.image_size, int(rng.integers(config.objects[0], config.objects[1] + 1)))
        file_name = f"{image_id:012d}.jpg"
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            raise OSError(f"OpenCV could not encode {file_name}")
        with atomic_path(folder / file_name) as tmp:
            tmp.write_bytes(encoded.tobytes())
        size = config.image_size
        images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
        annotations += [{"id": len(annotations) + k + 1, "image_id": image_id, **a} for k, a in enumerate(objects)]
    coco = {
        "info": {"description": "rtdetr-deploy synthetic shapes, large images with small objects", "version": "1"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name, "supercategory": "shape"} for cid, name in CATEGORIES.items()],
    }
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    with atomic_path(root / "annotations" / "instances_val.json") as tmp:
        tmp.write_text(json.dumps(coco))
    with atomic_path(root / "small_objects.json") as tmp:
        tmp.write_text(json.dumps({"version": VERSION, **asdict(config)}))
    return root
