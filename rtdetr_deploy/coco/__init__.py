"""COCO-format detection data, shared by the trainer and the evaluator: reading and checking annotation files
(category ids remapped to contiguous labels), finding a dataset's splits, the COCO box metrics, and class names
with their original category ids (COCO's 80, ``--names`` sources) (torch-free)."""

from .annotations import CocoImage, CocoSet, find_coco_split, load_coco
from .metrics import METRIC_NAMES, coco_box_map, coco_box_metrics
from .names import COCO, ClassNames, read_names

__all__ = [
    "COCO",
    "METRIC_NAMES",
    "ClassNames",
    "CocoImage",
    "CocoSet",
    "coco_box_map",
    "coco_box_metrics",
    "find_coco_split",
    "load_coco",
    "read_names",
]
