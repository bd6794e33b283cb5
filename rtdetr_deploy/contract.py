"""The deploy contract: the names of a deployed model's inputs and outputs, the sampling methods, and the batch range.

Exported graphs keep the official RT-DETR deploy I/O, so existing deploy scripts run our files:

- inputs ``images [N, 3, H, W]`` float32 and ``orig_target_sizes [N, 2]`` int64 (**width, height**), or, for a
  graph that preprocesses itself (``rtdetr-export --fuse-preprocess``), ``frames [N, H, W, 3]`` uint8 BGR;
- outputs ``labels [N, K]`` int64, ``boxes [N, K, 4]`` float32 ``x1, y1, x2, y2`` in original pixels and
  ``scores [N, K]`` float32: NMS-free top-k;
- or, for a raw-output graph (``--outputs raw``), ``pred_logits [N, Q, C]`` and ``pred_boxes [N, Q, 4]``
  normalised cxcywh, post-processed on the host.

The deformable attention samples its values either bilinearly (``grid_sample``) or with the discrete operator
(round to a pixel index and gather: no GridSample in the graph).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "DEFAULT_SAMPLING",
    "FUSED_INPUT_NAME",
    "INPUT_NAMES",
    "OUTPUT_NAMES",
    "RAW_OUTPUT_NAMES",
    "SAMPLING_METHODS",
    "check_batch_range",
    "check_sampling",
]

INPUT_NAMES = ("images", "orig_target_sizes")
FUSED_INPUT_NAME = "frames"
OUTPUT_NAMES = ("labels", "boxes", "scores")
RAW_OUTPUT_NAMES = ("pred_logits", "pred_boxes")
SAMPLING_METHODS = ("bilinear", "discrete")
# What the exporter writes unless told otherwise: the graph then has no GridSample.
DEFAULT_SAMPLING = "discrete"


def check_sampling(method: str) -> str:
    """``method`` if it is one of ``SAMPLING_METHODS``.

    Raises:
        ValueError: any other value, naming the valid ones.
    """
    if method not in SAMPLING_METHODS:
        raise ValueError(f"unknown sampling method {method!r}; choose from {', '.join(SAMPLING_METHODS)}")
    return method


def check_batch_range(batch: Sequence[int]) -> tuple[int, int, int]:
    """Validate ``(min, opt, max)`` batch sizes: three integers with ``1 <= MIN <= OPT <= MAX``.

    Raises:
        ValueError: not three integers, or out of order.
    """
    batch = tuple(batch)
    if len(batch) != 3 or not all(isinstance(b, int) and not isinstance(b, bool) for b in batch):
        raise ValueError(f"batch range must be three integers (MIN, OPT, MAX), got {batch}")
    low, opt, high = batch
    if not 1 <= low <= opt <= high:
        raise ValueError(f"batch range must satisfy 1 <= MIN <= OPT <= MAX, got {low},{opt},{high}")
    return low, opt, high
