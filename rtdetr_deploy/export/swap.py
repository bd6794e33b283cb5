"""What the sampling swap costs, and what to do about it.

Weights trained with bilinear sampling lose accuracy when the graph samples discretely (the default export);
how much depends on the model, from nothing to most of its AP. The export measures the cost on the same
images as the verification, without labels: the kept AP (``kept_ap``) of the discrete model's detections
against the bilinear model's confident detections. With labelled data (``--eval-data``) the cost is the ratio
of the discrete graph's COCO AP to the bilinear model's instead. Beyond a small loss the export warns, with the
measured cost and the two remedies, and records it in the report; ``--strict-sampling`` refuses instead.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..errors import ExportError
from .acceptance import SwapCost
from .config import ExportConfig
from .gates import MIN_PSEUDO_OBJECTS, MIN_SWAP_AP_RATIO, MIN_SWAP_KEPT_AP
from .report import AccuracyReport, SwapReport

__all__ = ["MIN_AP_RATIO", "MIN_KEPT_AP", "judge_swap"]

# The thresholds live in ``gates``; these names say what they are here.
MIN_KEPT_AP = MIN_SWAP_KEPT_AP
MIN_AP_RATIO = MIN_SWAP_AP_RATIO


def _remedies(weights: Path) -> str:
    return (
        f"fine-tune with discrete sampling for a few epochs (rtdetr-train --init {weights} --sampling discrete), "
        "or export with --sampling bilinear for engines that have GridSample"
    )


def _bilinear_ap(config: ExportConfig) -> float:
    """COCO AP of the checkpoint itself (PyTorch, the sampling it was trained with) on ``config.eval_data``."""
    from ..eval.evaluate import evaluate_model, load_eval_data

    data = load_eval_data(config.eval_data, split=config.eval_split)
    return evaluate_model(config.weights, data, backend="torch", device="cpu", progress=False).metrics["AP"]


def judge_swap(
    config: ExportConfig, *, trained_sampling: str, swap: SwapReport, accuracy: AccuracyReport | None
) -> SwapCost:
    """Judge the swap from the weights' ``trained_sampling`` to ``config.sampling``.

    Args:
        config: the export (its sampling, weights, labelled data and ``strict_sampling``).
        trained_sampling: the sampling the weights were trained with.
        swap: the measured swap (``verify.sampling_swap_report``, with its ``kept_ap``).
        accuracy: the AP gates (the FP32 graph's AP) with labelled data, else ``None``.

    Returns:
        The measure (``"kept AP"``, ``"AP ratio"`` or ``None`` when there is no swap or nothing to judge), its
        value and threshold, and the warning line (``None``: no warning).

    Raises:
        ExportError: the swap costs more than allowed and ``config.strict_sampling`` is set.
    """
    if not (trained_sampling == "bilinear" and config.sampling == "discrete"):
        return SwapCost()
    if accuracy is not None:
        bilinear, discrete = _bilinear_ap(config), accuracy.gates["fp32"].ap
        ratio = discrete / bilinear if bilinear > 0 else 1.0
        verdict = SwapCost(measure="AP ratio", value=ratio, threshold=MIN_AP_RATIO, bilinear_ap=bilinear)
        cost = f"AP {discrete:.4f} against {bilinear:.4f} with bilinear sampling ({ratio:.0%})"
    else:
        kept = swap.kept_ap
        if kept is None or kept.pseudo_objects < MIN_PSEUDO_OBJECTS:
            return SwapCost()
        verdict = SwapCost(measure="kept AP", value=kept.ap, threshold=MIN_KEPT_AP)
        cost = (
            f"kept AP {kept.ap:.3f} against the bilinear model's {kept.pseudo_objects} confident detections "
            f"(label-free; < {MIN_KEPT_AP:g})"
        )
    if verdict.value >= verdict.threshold:
        return verdict
    warning = (
        f"these weights were trained with bilinear sampling and lose accuracy with discrete sampling: {cost}; "
        + _remedies(config.weights)
    )
    if config.strict_sampling:
        raise ExportError(f"--strict-sampling: {warning}")
    return replace(verdict, warning=warning)
