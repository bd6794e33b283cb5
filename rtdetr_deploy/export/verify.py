"""Prove that an exported graph computes what the PyTorch model computes, and measure what the swap costs.

Verification runs the probe (``onnx_export.Probe``) in ONNX Runtime on real or generated images, fed exactly as
the runtime feeds the published file, and PyTorch in the same sampling mode. Its rules tell ties from errors:

- **decisions**: every query selection and discrete sampling index is compared directly. Where the two differ
  at a tie (scores equal to within ``selection_tol``, a coordinate within ``index_tie_ulps`` float32 ULPs of a
  pixel boundary) PyTorch takes ONNX Runtime's outcome and the tie is counted; any other difference is an error.
- **raw outputs**: with the decisions held equal, every query's logits and boxes must agree within tolerance.
- **detections**: the published graph's top detections against PyTorch's, counted only where the ranking is
  decided (``agreement``); when nothing is decided (untrained weights) the report says so and the raw outputs
  decide.
- the published graph must give what its probe gives, and its metadata must record the model's preprocessing.

The swap report compares discrete against bilinear sampling on the same weights, so users see whether they
must fine-tune.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..agreement import compare_detections
from ..contract import OUTPUT_NAMES, RAW_OUTPUT_NAMES, SAMPLING_METHODS
from ..data.scenes import cluttered_scenes
from ..metadata import Preprocessing
from ..models.decisions import DecisionLog
from ..models.postprocess import postprocess
from ..models.rtdetr import RTDETR
from ..runtime.onnxruntime_backend import read_onnx_metadata
from ..runtime.postprocess import topk_detections
from ..runtime.preprocess import preprocess
from ..runtime.sources import read_image_folder
from .gates import NOT_DECISIVE, TOLERANCES, Tolerances
from .graphs import decision_pairs, file_inputs, run_graph
from .kept_ap import kept_ap
from .onnx_export import Probe
from .report import (
    DecisionPoint,
    DecisionReport,
    DetectionAgreement,
    PreprocessingCheck,
    RawAgreement,
    SwapReport,
    VerificationReport,
)

__all__ = ["Tolerances", "sampling_swap_report", "verification_images", "verify_against_pytorch"]


def verification_images(folder: Path | None, *, count: int = 4, seed: int = 0) -> list[np.ndarray]:
    """BGR uint8 images from ``folder`` (up to ``count``), or ``count`` generated scenes when it is None."""
    if folder is None:
        return cluttered_scenes(count, seed=seed)
    return read_image_folder(folder, limit=count)


def _reference_pixels(images_bgr: list[np.ndarray], input_size: tuple[int, int]) -> np.ndarray:
    """What the PyTorch model takes: the official preprocessing (RGB, plain resize, [0, 1]), with which every
    checkpoint this package reads was trained."""
    return preprocess(images_bgr, input_size=input_size, preprocessing=Preprocessing())[0]


@torch.no_grad()
def _pytorch_replaying(
    model: RTDETR, pixels: np.ndarray, replay: list, tolerances: Tolerances
) -> tuple[dict[str, torch.Tensor], DecisionLog]:
    log = DecisionLog(replay=replay, index_tie_ulps=tolerances.index_tie_ulps, selection_tol=tolerances.selection_tol)
    with log:
        raw = model(torch.from_numpy(pixels))
    return raw, log


def _decision_report(log: DecisionLog) -> DecisionReport:
    disagreeing = [d for d in log.decisions if d.disagreements]
    return DecisionReport(
        points=len(log.decisions),
        compared=int(sum(d.outcome.numel() for d in log.decisions)),
        ties=log.ties,
        disagreements=log.disagreements,
        first_disagreement=disagreeing[0].example if disagreeing else None,
        per_point=tuple(DecisionPoint(d.where, d.kind, d.ties, d.disagreements) for d in log.decisions),
    )


def _raw_report(raw: dict[str, torch.Tensor], ort: dict[str, np.ndarray], tolerances: Tolerances) -> RawAgreement:
    logit_delta = np.abs(raw["pred_logits"].numpy() - ort["pred_logits"]).max(-1)
    box_delta = np.abs(raw["pred_boxes"].numpy() - ort["pred_boxes"]).max(-1)
    within = (logit_delta <= tolerances.logits) & (box_delta <= tolerances.boxes)
    return RawAgreement(
        queries=int(within.size),
        within_tolerance=float(within.mean()),
        max_logit_delta=float(logit_delta.max()),
        max_box_delta=float(box_delta.max()),
    )


def _detection_report(
    torch_dets: list[np.ndarray], deploy: dict[str, np.ndarray], topk: int, tolerances: Tolerances
) -> DetectionAgreement:
    agreement = compare_detections(torch_dets, deploy, topn=min(100, topk), margin=tolerances.scores)
    decisive = agreement["compared"] >= tolerances.min_decided
    return DetectionAgreement(
        rule=f"decided ranking (score margin {tolerances.scores:g})" if decisive else NOT_DECISIVE,
        decided=agreement["compared"],
        candidates=agreement["candidates"],
        matched=agreement["matched"],
        min_image_matched=agreement["min_image_matched"] if decisive else None,
        max_score_delta=agreement["max_score_delta"],
        max_box_delta_px=agreement["max_box_delta_px"],
    )


def _failures(
    preprocessing: PreprocessingCheck,
    decisions: DecisionReport,
    raw: RawAgreement,
    detections: DetectionAgreement,
    published_equals_probe: bool,
    *,
    largest_side: int,
    tolerances: Tolerances,
) -> tuple[str, ...]:
    failures = []
    if preprocessing.file != preprocessing.model:
        failures.append(
            f"the file's metadata records the preprocessing {asdict(preprocessing.file)}, but the model takes "
            f"{asdict(preprocessing.model)}"
        )
    if decisions.disagreements:
        failures.append(
            f"{decisions.disagreements} decisions differ from PyTorch's away from any tie; the first at "
            f"{decisions.first_disagreement}"
        )
    if raw.within_tolerance < tolerances.min_matched:
        failures.append(
            f"with the decisions held equal only {raw.within_tolerance:.1%} of raw queries agree within "
            f"{tolerances.logits:.0e} (logits) / {tolerances.boxes:.0e} (boxes); max logit delta "
            f"{raw.max_logit_delta:.2e}, max box delta {raw.max_box_delta:.2e}"
        )
    if detections.decisive and detections.min_image_matched < tolerances.min_matched:
        failures.append(f"only {detections.min_image_matched:.1%} of the decided top detections agree")
    if detections.max_score_delta > tolerances.scores:
        failures.append(f"matched scores differ by {detections.max_score_delta:.2e} (> {tolerances.scores:.0e})")
    if detections.max_box_delta_px > tolerances.box_fraction * largest_side:
        failures.append(f"matched boxes differ by {detections.max_box_delta_px:.2e} px")
    if not published_equals_probe:
        failures.append("the published graph computes other detections than the verified probe")
    return tuple(failures)


def _published_detections(
    probe_out: dict[str, np.ndarray],
    deploy_out: dict[str, np.ndarray],
    sizes_wh: np.ndarray,
    *,
    outputs: str,
    topk: int,
) -> tuple[bool, dict[str, np.ndarray]]:
    """Whether the published graph gives what its probe gives, and its detections as the runtime makes them
    (a raw-output graph's top-k on the host, ``runtime.postprocess.topk_detections``)."""
    names = RAW_OUTPUT_NAMES if outputs == "raw" else OUTPUT_NAMES
    same = all(np.array_equal(probe_out[name], deploy_out[name]) for name in names)
    if outputs == "raw":
        detections = topk_detections(deploy_out["pred_logits"], deploy_out["pred_boxes"], sizes_wh, topk=topk)
        deploy_out = dict(zip(OUTPUT_NAMES, detections, strict=True))
    return same, deploy_out


def verify_against_pytorch(
    probe: Probe,
    deploy_path: Path,
    model: RTDETR,
    images_bgr: list[np.ndarray],
    *,
    tolerances: Tolerances = TOLERANCES,
) -> VerificationReport:
    """Verify the published FP32 graph ``deploy_path`` and its ``probe`` against ``model`` (same sampling).

    Returns:
        The report: ``decisions``, ``raw``, ``detections`` (with the ``rule`` that decided), the preprocessing on
        both sides, the ``tolerances``, and one line per failure in ``failures`` (``passed`` without any).
    """
    metadata = read_onnx_metadata(deploy_path)
    pixels, sizes_wh = file_inputs(deploy_path, images_bgr)
    probe_out = run_graph(probe.path, pixels, sizes_wh, batch=metadata.batch)
    deploy_out = run_graph(deploy_path, pixels, sizes_wh, batch=metadata.batch)
    reference = _reference_pixels(images_bgr, metadata.input_size)
    raw, log = _pytorch_replaying(model, reference, decision_pairs(probe_out, len(probe.decisions)), tolerances)
    sizes = torch.from_numpy(sizes_wh)
    torch_dets = [t.numpy() for t in postprocess(raw["pred_logits"], raw["pred_boxes"], sizes, topk=metadata.topk)]
    same, deploy_out = _published_detections(
        probe_out, deploy_out, sizes_wh, outputs=metadata.outputs, topk=metadata.topk
    )
    checks = (
        PreprocessingCheck(file=metadata.preprocessing, model=Preprocessing()),
        _decision_report(log),
        _raw_report(raw, probe_out, tolerances),
        _detection_report(torch_dets, deploy_out, metadata.topk, tolerances),
        same,
    )
    largest_side = max(max(img.shape[:2]) for img in images_bgr)
    return VerificationReport(
        len(images_bgr),
        tuple(metadata.input_size),
        metadata.topk,
        *checks,
        tolerances=tolerances,
        failures=_failures(*checks, largest_side=largest_side, tolerances=tolerances),
    )


@torch.no_grad()
def sampling_swap_report(
    model: RTDETR, images_bgr: list[np.ndarray], *, input_size: tuple[int, int], top: int = 100
) -> SwapReport:
    """What discrete sampling changes against bilinear on the same weights and images (PyTorch, CPU).

    Returns:
        ``agreement`` (fraction of bilinear's top detections that discrete finds again with the same label
        and IoU >= 0.9), its per-image values, the mean and max change of the top scores rank by rank, and
        the largest box shift of the matched detections in pixels, and ``kept_ap`` (``kept_ap.kept_ap`` of
        discrete against bilinear's confident detections).
    """
    pixels, sizes = preprocess(images_bgr, input_size=input_size, preprocessing=Preprocessing())
    original = model.sampling
    outputs = {}
    try:
        for method in SAMPLING_METHODS:
            raw = model.set_sampling(method)(torch.from_numpy(pixels))
            labels_boxes_scores = postprocess(raw["pred_logits"], raw["pred_boxes"], torch.from_numpy(sizes), topk=top)
            outputs[method] = [t.numpy() for t in labels_boxes_scores]
    finally:
        model.set_sampling(original)
    agreement = compare_detections(outputs["bilinear"], outputs["discrete"], topn=top)
    score_deltas = np.abs(outputs["bilinear"][2] - outputs["discrete"][2])
    return SwapReport(
        top=top,
        agreement=agreement["matched"],
        per_image_agreement=tuple(agreement["per_image_matched"]),
        mean_abs_score_delta=float(score_deltas.mean()),
        max_abs_score_delta=float(score_deltas.max()),
        max_box_delta_px=agreement["max_box_delta_px"],
        kept_ap=kept_ap(outputs["bilinear"], outputs["discrete"]),
    )
