"""Which layer groups INT8 may quantize, decided by measurement: leave one group in float at a time.

For every group of ``int8_groups.INT8_GROUPS`` present in the graph, the FP32 graph is quantized with that group
alone kept float and evaluated (COCO AP through the runtime, ``eval``); the fully quantized graph and the FP32
graph are the two ends. A group whose float version recovers AP is one INT8 breaks; one that recovers nothing
can be quantized. The table goes into the export's ``*.verify.json`` (``rtdetr-export --int8-sensitivity``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx

from ..eval.evaluate import EvalData, evaluate_model
from .int8_groups import INT8_GROUPS, nodes_in_groups
from .quantize import quantize_int8

__all__ = ["int8_sensitivity"]


def int8_sensitivity(
    fp32_onnx: Path,
    calibration_images: Sequence[np.ndarray],
    data: EvalData,
    *,
    target: str = "onnxruntime",
    calibration: str = "minmax",
    groups: Sequence[str] | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, object]:
    """AP of the FP32 graph, of full INT8, and of INT8 with each group kept float.

    Args:
        fp32_onnx: the verified FP32 graph.
        calibration_images: BGR uint8 images for calibration.
        data: labelled data to evaluate on.
        target: the INT8 target (``quantize.INT8_TARGETS``).
        calibration: the calibration method.
        groups: the groups to test (default: every group that has quantizable nodes in the graph).

    Returns:
        ``{"fp32_AP", "int8_AP", "groups": [{"group", "nodes", "AP", "recovered"}], ...}`` with ``recovered`` the
        AP the group's float version wins back over full INT8 (positive: INT8 costs accuracy there).
    """
    model = onnx.load(str(fp32_onnx))
    present = [g for g in (groups or INT8_GROUPS) if nodes_in_groups(model, [g])]
    fp32_ap = evaluate_model(fp32_onnx, data, progress=False).metrics["AP"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="rtdetr-int8-sensitivity-") as work:

        def ap_keeping(keep: tuple[str, ...], name: str) -> float:
            path = quantize_int8(
                fp32_onnx, Path(work) / f"{name}.onnx", calibration_images, target=target, keep_float=keep,
                calibration=calibration,
            )  # fmt: skip
            return evaluate_model(path, data, progress=False).metrics["AP"]

        int8_ap = ap_keeping((), "all")
        log(f"INT8 sensitivity: FP32 AP {fp32_ap:.4f}, full INT8 AP {int8_ap:.4f}")
        for group in present:
            ap = ap_keeping((group,), group)
            nodes = len(nodes_in_groups(model, [group]))
            rows.append({"group": group, "nodes": nodes, "AP": ap, "recovered": ap - int8_ap})
            log(f"  {group:<26} float ({nodes} nodes): AP {ap:.4f} ({ap - int8_ap:+.4f})")
    return {
        "target": target,
        "calibration": calibration,
        "images": data.num_images,
        "fp32_AP": fp32_ap,
        "int8_AP": int8_ap,
        "groups": rows,
    }
