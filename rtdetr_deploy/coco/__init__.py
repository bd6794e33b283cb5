"""COCO-format detection data, shared by the trainer and the evaluator: reading and checking annotation files
(category ids remapped to contiguous labels), finding a dataset's splits, and the COCO box metrics (torch-free)."""

from .annotations import CocoImage, CocoSet, find_coco_split, load_coco
from .metrics import METRIC_NAMES, coco_box_map, coco_box_metrics

__all__ = ["METRIC_NAMES", "CocoImage", "CocoSet", "coco_box_map", "coco_box_metrics", "find_coco_split", "load_coco"]
