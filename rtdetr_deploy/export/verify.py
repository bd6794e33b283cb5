"""Prove that an exported graph computes what the PyTorch model computes, and measure what the swap costs.

Verification runs the ONNX in ONNX Runtime on real or generated images and compares, with the PyTorch model
in the same sampling mode, both the raw decoder outputs and the post-processed top-k. The swap report
compares discrete against bilinear sampling on the same weights, so users see whether they must fine-tune.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..agreement import compare_detections
from ..metadata import Preprocessing
from ..models.postprocess import postprocess
from ..models.rtdetr import RTDETR
from ..runtime.preprocess import preprocess
from ..runtime.sources import IMAGE_SUFFIXES

__all__ = ["Tolerances", "run_deploy_graph", "sampling_swap_report", "to_input", "verification_images", "verify_onnx"]


@dataclass(frozen=True)
class Tolerances:
    """Largest differences accepted between ONNX Runtime and PyTorch.

    Attributes:
        logits: absolute, on raw class logits of a query.
        boxes: absolute, on raw normalised cxcywh boxes of a query.
        scores: absolute, on the post-processed scores of matched detections.
        box_fraction: on post-processed pixel boxes, as a fraction of the image's larger side.
        min_matched: fraction of the reference's top detections (and of its raw queries) that must be found
            again within tolerance.
    """

    logits: float = 1e-3
    boxes: float = 1e-4
    scores: float = 1e-4
    box_fraction: float = 1e-4
    min_matched: float = 0.99


def verification_images(folder: Path | None, *, count: int = 4, seed: int = 0) -> list[np.ndarray]:
    """BGR uint8 images from ``folder`` (up to ``count``), or ``count`` generated ones when it is None."""
    if folder is None:
        return [_generated_image(np.random.default_rng(seed + i)) for i in range(count)]
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    images = [img for img in (cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths[:count]) if img is not None]
    if not images:
        raise ValueError(f"no readable images in {folder}")
    return images


def _generated_image(rng: np.random.Generator) -> np.ndarray:
    """A cluttered scene: smooth noise background with filled shapes of random colours and sizes."""
    height, width = int(rng.integers(360, 720)), int(rng.integers(360, 960))
    background = cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (width, height))
    for _ in range(int(rng.integers(4, 12))):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(10, min(width, height) // 2))
        if rng.random() < 0.5:
            cv2.rectangle(background, (x, y), (x + size, y + size // 2), color, -1)
        else:
            cv2.circle(background, (x, y), size // 2, color, -1)
    return background


def to_input(images_bgr: list[np.ndarray], input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The runtime's official preprocessing (RGB, plain resize, [0, 1], NCHW) plus ``(width, height)`` sizes."""
    return preprocess(images_bgr, input_size=input_size, preprocessing=Preprocessing())


def _ort_session(path: Path):  # noqa: ANN202 - onnxruntime is imported lazily
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _detections(raw: dict[str, torch.Tensor], sizes: np.ndarray, topk: int) -> list[np.ndarray]:
    labels_boxes_scores = postprocess(raw["pred_logits"], raw["pred_boxes"], torch.from_numpy(sizes), topk=topk)
    return [t.numpy() for t in labels_boxes_scores]


def _query_set_deltas(
    ref_logits: torch.Tensor, ref_boxes: torch.Tensor, logits: np.ndarray, boxes: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per reference query ``[B, Q]``: largest logit and box difference to its nearest query in the other set.

    Query selection is a top-k over encoder scores: when two scores nearly tie, float rounding may order the
    same queries differently, so queries are compared as sets rather than position by position.
    """
    ref = torch.cat([ref_logits, ref_boxes], -1).double()
    other = torch.cat([torch.from_numpy(logits), torch.from_numpy(boxes)], -1).double()
    nearest = torch.cdist(ref, other, p=float("inf")).argmin(-1)
    paired = other.gather(1, nearest.unsqueeze(-1).expand_as(other))
    delta = (ref - paired).abs()
    num_classes = ref_logits.shape[-1]
    return delta[..., :num_classes].amax(-1), delta[..., num_classes:].amax(-1)


def run_deploy_graph(
    onnx_path: Path, pixels: np.ndarray, sizes: np.ndarray, batch: tuple[int, int, int]
) -> list[np.ndarray]:
    """Run the deploy graph over all images in chunks of the largest batch it accepts (padding a fixed batch)."""
    session = _ort_session(onnx_path)
    low, _, high = batch
    chunks = []
    for start in range(0, len(pixels), high):
        images, image_sizes = pixels[start : start + high], sizes[start : start + high]
        count = len(images)
        pad = max(low - count, 0)
        if pad:
            images = np.concatenate([images, np.repeat(images[-1:], pad, axis=0)])
            image_sizes = np.concatenate([image_sizes, np.repeat(image_sizes[-1:], pad, axis=0)])
        outputs = session.run(["labels", "boxes", "scores"], {"images": images, "orig_target_sizes": image_sizes})
        chunks.append([o[:count] for o in outputs])
    return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]


@torch.no_grad()
def verify_onnx(
    onnx_path: Path,
    raw_onnx_path: Path | None,
    model: RTDETR,
    images_bgr: list[np.ndarray],
    *,
    input_size: tuple[int, int],
    topk: int,
    batch: tuple[int, int, int] = (1, 1, 1),
    tolerances: Tolerances = Tolerances(),
) -> dict[str, object]:
    """Compare ONNX Runtime with ``model`` (same sampling) image by image.

    ``batch`` is the graph's ``(min, opt, max)`` batch range; images are fed in batches it accepts.

    Returns:
        A JSON-ready report: per-check maxima, matched fractions, tolerances and ``passed``.
    """
    pixels, sizes = to_input(images_bgr, input_size)
    ort_outputs = run_deploy_graph(onnx_path, pixels, sizes, batch)
    raw = model(torch.from_numpy(pixels))
    torch_outputs = _detections(raw, sizes, topk)
    report: dict[str, object] = {"images": len(images_bgr), "input_size": list(input_size), "topk": topk}

    if raw_onnx_path is not None:
        logits, boxes = _ort_session(raw_onnx_path).run(["pred_logits", "pred_boxes"], {"images": pixels})
        logit_deltas, box_deltas = _query_set_deltas(raw["pred_logits"], raw["pred_boxes"], logits, boxes)
        within = (logit_deltas <= tolerances.logits) & (box_deltas <= tolerances.boxes)
        report["raw_max_logit_delta"] = float(logit_deltas.max())
        report["raw_max_box_delta"] = float(box_deltas.max())
        report["raw_queries_within_tolerance"] = float(within.double().mean())

    agreement = compare_detections(torch_outputs, ort_outputs, topn=min(100, topk))
    largest_side = max(max(img.shape[:2]) for img in images_bgr)
    report["min_matched"] = agreement["min_image_matched"]
    report["max_score_delta"] = agreement["max_score_delta"]
    report["max_box_delta_px"] = agreement["max_box_delta_px"]
    report["max_sorted_score_delta"] = agreement["max_sorted_score_delta"]
    report["tolerances"] = asdict(tolerances)

    failures = []
    # A query may legitimately differ where a discrete sampling location sits on a pixel boundary and float
    # rounding picks the neighbouring pixel; what must hold is that such queries stay rare.
    if report.get("raw_queries_within_tolerance", 1.0) < tolerances.min_matched:
        failures.append(
            f"only {report['raw_queries_within_tolerance']:.1%} of raw queries agree within "
            f"{tolerances.logits:.0e} (logits) / {tolerances.boxes:.0e} (boxes); max logit delta "
            f"{report['raw_max_logit_delta']:.2e}"
        )
    if report["min_matched"] < tolerances.min_matched:
        failures.append(f"only {report['min_matched']:.1%} of the top detections agree")
    if report["max_score_delta"] > tolerances.scores:
        failures.append(f"scores differ by {report['max_score_delta']:.2e} (> {tolerances.scores:.0e})")
    if report["max_box_delta_px"] > tolerances.box_fraction * largest_side:
        failures.append(f"boxes differ by {report['max_box_delta_px']:.2e} px")
    report["passed"] = not failures
    report["failures"] = failures
    return report


@torch.no_grad()
def sampling_swap_report(
    model: RTDETR, images_bgr: list[np.ndarray], *, input_size: tuple[int, int], top: int = 100
) -> dict[str, object]:
    """What discrete sampling changes against bilinear on the same weights and images (PyTorch, CPU).

    Returns:
        ``agreement`` (fraction of bilinear's top detections that discrete finds again with the same label
        and IoU >= 0.9), its per-image values, the mean and max change of the top scores rank by rank, and
        the largest box shift of the matched detections in pixels.
    """
    pixels, sizes = to_input(images_bgr, input_size)
    original = model.sampling
    outputs = {}
    try:
        for method in ("bilinear", "discrete"):
            raw = model.set_sampling(method)(torch.from_numpy(pixels))
            outputs[method] = _detections(raw, sizes, top)
    finally:
        model.set_sampling(original)
    agreement = compare_detections(outputs["bilinear"], outputs["discrete"], topn=top)
    score_deltas = np.abs(outputs["bilinear"][2] - outputs["discrete"][2])
    return {
        "top": top,
        "agreement": agreement["matched"],
        "per_image_agreement": agreement["per_image_matched"],
        "mean_abs_score_delta": float(score_deltas.mean()),
        "max_abs_score_delta": float(score_deltas.max()),
        "max_box_delta_px": agreement["max_box_delta_px"],
    }
