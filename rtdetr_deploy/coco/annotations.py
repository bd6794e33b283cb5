"""COCO-format annotations: read, validate with one-line errors, remap category ids to contiguous labels.

As in the official pipeline, crowd annotations (``iscrowd=1``) are left out of the training targets (COCO
evaluation treats them as regions to ignore), boxes are clamped to the image when loaded and those left
with no area are dropped, and images without annotations are kept as negatives.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CocoImage", "CocoSet", "load_coco", "find_coco_split"]


@dataclass(frozen=True)
class CocoImage:
    """One image and its training targets.

    Attributes:
        id: COCO image id.
        path: image file.
        boxes_xyxy: ``[n, 4]`` float32 pixel boxes of the non-crowd annotations (not yet clamped).
        labels: ``[n]`` int64 contiguous labels.
    """

    id: int
    path: Path
    boxes_xyxy: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class CocoSet:
    """A validated COCO detection set.

    Attributes:
        annotation_file: the JSON it was read from.
        images: every image, annotated or not, in file order.
        category_ids: original category id of each contiguous label (sorted ascending).
        class_names: name of each contiguous label.
        coco: the parsed JSON, for COCO evaluation.
    """

    annotation_file: Path
    images: list[CocoImage]
    category_ids: tuple[int, ...]
    class_names: tuple[str, ...]
    coco: dict[str, Any] = field(repr=False)

    @property
    def num_classes(self) -> int:
        """Number of contiguous labels (categories)."""
        return len(self.category_ids)


def load_coco(annotation_file: str | os.PathLike[str], images_dir: str | os.PathLike[str]) -> CocoSet:
    """Read and check a COCO detection annotation file against its images folder.

    Raises:
        FileNotFoundError: the annotation file, the images folder or images it lists are missing.
        ValueError: invalid JSON, not a COCO detection file, no images, bad boxes, or annotations referring
            to unknown images or categories.
    """
    annotation_file, images_dir = Path(annotation_file), Path(images_dir)
    if not annotation_file.is_file():
        raise FileNotFoundError(f"annotation file not found: {annotation_file}")
    if not images_dir.is_dir():
        raise FileNotFoundError(f"images folder not found: {images_dir}")
    try:
        coco = json.loads(annotation_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{annotation_file}: invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    except UnicodeDecodeError:
        raise ValueError(f"{annotation_file}: not a UTF-8 JSON file") from None
    where = str(annotation_file)
    if not isinstance(coco, dict) or any(not isinstance(coco.get(k), list) for k in ("images", "categories")):
        raise ValueError(f"{where}: not a COCO detection file (needs 'images' and 'categories' lists)")
    if not isinstance(coco.setdefault("annotations", []), list):
        raise ValueError(f"{where}: 'annotations' must be a list")
    if not coco["images"]:
        raise ValueError(f"{where}: the dataset is empty (no images)")
    if not coco["categories"]:
        raise ValueError(f"{where}: no categories")

    category_ids, class_names = _categories(coco["categories"], where)
    label_of = {cid: label for label, cid in enumerate(category_ids)}
    images = {}
    for image in coco["images"]:
        if not isinstance(image, dict) or not {"id", "file_name"} <= image.keys():
            raise ValueError(f"{where}: every image needs 'id' and 'file_name', got {str(image)[:80]}")
        if image["id"] in images:
            raise ValueError(f"{where}: duplicate image id {image['id']}")
        images[image["id"]] = image
    _check_files(images.values(), images_dir, where)

    boxes: dict[int, list[list[float]]] = {i: [] for i in images}
    labels: dict[int, list[int]] = {i: [] for i in images}
    for ann in coco["annotations"]:
        ann_id = ann.get("id", "?") if isinstance(ann, dict) else "?"
        if not isinstance(ann, dict) or not {"image_id", "category_id", "bbox"} <= ann.keys():
            raise ValueError(f"{where}: annotation {ann_id} needs 'image_id', 'category_id' and 'bbox'")
        if ann["image_id"] not in images:
            raise ValueError(f"{where}: annotation {ann_id} refers to image_id {ann['image_id']}, not in 'images'")
        if ann["category_id"] not in label_of:
            valid = ", ".join(map(str, category_ids))
            raise ValueError(
                f"{where}: annotation {ann_id} has category_id {ann['category_id']}, not in 'categories' ({valid})"
            )
        bbox = ann["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, int | float) for v in bbox):
            raise ValueError(f"{where}: annotation {ann_id} has bbox {bbox!r}; expected [x, y, width, height]")
        if ann.get("iscrowd", 0):
            continue
        x, y, w, h = (float(v) for v in bbox)
        boxes[ann["image_id"]].append([x, y, x + w, y + h])
        labels[ann["image_id"]].append(label_of[ann["category_id"]])

    records = [
        CocoImage(
            id=image_id,
            path=images_dir / image["file_name"],
            boxes_xyxy=np.asarray(boxes[image_id], dtype=np.float32).reshape(-1, 4),
            labels=np.asarray(labels[image_id], dtype=np.int64),
        )
        for image_id, image in images.items()
    ]
    return CocoSet(annotation_file, records, category_ids, class_names, coco)


def _categories(categories: list[Any], where: str) -> tuple[tuple[int, ...], tuple[str, ...]]:
    names = {}
    for cat in categories:
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or isinstance(cat.get("id"), bool):
            raise ValueError(f"{where}: every category needs an integer 'id', got {str(cat)[:80]}")
        if cat["id"] in names:
            raise ValueError(f"{where}: duplicate category id {cat['id']}")
        names[cat["id"]] = str(cat.get("name", cat["id"]))
    ids = tuple(sorted(names))
    return ids, tuple(names[i] for i in ids)


def _check_files(images: Any, images_dir: Path, where: str) -> None:
    present = {p.relative_to(images_dir).as_posix() for p in images_dir.rglob("*") if p.is_file()}
    missing = [image["file_name"] for image in images if Path(image["file_name"]).as_posix() not in present]
    if missing:
        total = len(present) + len(missing)
        hint = difflib.get_close_matches(missing[0], present, n=1)
        suggestion = f" (closest file there: {hint[0]})" if hint else ""
        raise FileNotFoundError(
            f"{where}: {len(missing)} image(s) it lists are not in {images_dir}, e.g. {missing[0]}{suggestion}"
            if total
            else f"{where}: no images in {images_dir}"
        )


def find_coco_split(root: Path, split: str) -> tuple[Path, Path]:
    """``(annotation_file, images_dir)`` of ``split`` ("train" or "val") in a dataset folder.

    Looks for ``annotations/instances_{split}[2017].json`` with images in ``images/{split}``, ``{split}2017``,
    ``{split}`` or ``images``; then Roboflow's ``{split}/_annotations.coco.json`` (``valid`` for val).

    Raises:
        FileNotFoundError: naming every place that was looked at.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    names = (split, "valid") if split == "val" else (split,)
    candidates = [root / "annotations" / f"instances_{split}{suffix}.json" for suffix in ("", "2017")]
    candidates += [root / name / "_annotations.coco.json" for name in names]
    annotation_file = next((c for c in candidates if c.is_file()), None)
    if annotation_file is None:
        looked = ", ".join(str(c.relative_to(root)) for c in candidates)
        raise FileNotFoundError(f"no {split} annotations in {root} (looked for {looked})")
    if annotation_file.name == "_annotations.coco.json":
        return annotation_file, annotation_file.parent
    folders = [root / "images" / split, root / f"{split}2017", root / split, root / "images"]
    images_dir = next((f for f in folders if f.is_dir()), None)
    if images_dir is None:
        looked = ", ".join(str(f.relative_to(root)) for f in folders)
        raise FileNotFoundError(f"images folder for {split} not found in {root} (looked for {looked})")
    return annotation_file, images_dir
