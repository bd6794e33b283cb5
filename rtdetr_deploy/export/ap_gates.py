"""The accuracy gates of an export: the COCO AP of every written graph on labelled data, whether each variant
stays within the loss it may have (``gates.DEFAULT_MAX_AP_DROP``), and the INT8 sensitivity table. A variant that
fails its gate is refused by ``refusal``."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from ..artifacts import precision_of_variant
from .config import ExportConfig
from .files import ExportFiles
from .report import AccuracyGate, AccuracyReport

__all__ = ["StepTimer", "accuracy_gates", "int8_sensitivity_table"]

# The export's step timer (``steps.Steps.step``): ``with step(name) as note: note["detail"] = ...``.
StepTimer = Callable[[str], AbstractContextManager[dict[str, str]]]


def accuracy_gates(config: ExportConfig, files: ExportFiles, *, step: StepTimer) -> AccuracyReport:
    """COCO AP of every written graph on the labelled data, and whether each variant stays within its allowed
    loss against FP32 (``config.allowed_ap_drop``)."""
    from ..eval.evaluate import evaluate_models, load_eval_data

    paths = {"fp32": files.onnx, **files.variants, **files.openvino}
    with step("accuracy") as note:
        data = load_eval_data(config.eval_data, split=config.eval_split)
        scores = evaluate_models(list(paths.values()), data, progress=False)
        fp32_ap = scores[0].metrics["AP"]
        gates = {}
        for (variant, path), score in zip(paths.items(), scores, strict=True):
            drop = fp32_ap - score.metrics["AP"]
            allowed = config.allowed_ap_drop(precision_of_variant(variant)) if variant != "fp32" else None
            gates[variant] = AccuracyGate(
                file=path.name,
                delta_ap=-drop,
                allowed_drop=allowed,
                accepted=allowed is None or drop <= allowed,
                metrics=dict(score.metrics),
            )
        note["detail"] = ", ".join(f"{v} AP {g.ap:.3f}" for v, g in gates.items())
    return AccuracyReport(data=str(config.eval_data), split=config.eval_split, images=data.num_images, gates=gates)


def int8_sensitivity_table(config: ExportConfig, fp32_onnx: Path, *, step: StepTimer) -> dict[str, object]:
    """The INT8 sensitivity table (``int8_sensitivity``) on the labelled data, for the ONNX Runtime target."""
    from ..eval.evaluate import load_eval_data
    from ..runtime.sources import read_image_folder
    from .int8_sensitivity import int8_sensitivity

    with step("int8-sens") as note:
        images = read_image_folder(config.calib, limit=config.calib_images, what="calibration images")
        data = load_eval_data(config.eval_data, split=config.eval_split)
        table = int8_sensitivity(fp32_onnx, images, data, calibration=config.calib_method)
        worst = max(table["groups"], key=lambda row: row["recovered"], default=None)
        note["detail"] = f"FP32 AP {table['fp32_AP']:.4f}, INT8 {table['int8_AP']:.4f}" + (
            f"; most sensitive: {worst['group']} ({worst['recovered']:+.4f} AP in float)" if worst else ""
        )
    return table
