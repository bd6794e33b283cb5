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
from torchvision.ops import box_iou

from ..models.postprocess import postprocess
from ..models.rtdetr import RTDETR

__all__ = ["Tolerances", "verification_images", "verify_onnx", "sampling_swap_report", "match_detections"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


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
    """Official preprocessing: RGB, plain resize, [0, 1], NCHW; plus the ``(width, height)`` int64 sizes."""
    height, width = input_size
    resized = [cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR) for img in images_bgr]
    batch = np.stack(resized)[..., ::-1]
    pixels = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)
    sizes = np.array([[img.shape[1], img.shape[0]] for img in images_bgr], dtype=np.int64)
    return pixels, sizes


def match_detections(
    reference: tuple[np.ndarray, np.ndarray, np.ndarray],
    candidate: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    top: int = 100,
    min_iou: float = 0.9,
) -> dict[str, float]:
    """Agreement of one image's detections ``(labels [K], boxes [K, 4] xyxy, scores [K])`` with a reference.

    Each of the reference's ``top`` best detections is matched greedily, best score first, to an unused
    candidate detection of the same label with IoU >= ``min_iou``.

    Returns:
        ``matched`` (fraction found again), ``max_score_delta`` and ``max_box_delta`` (pixels) over the matches.
    """
    ref_labels, ref_boxes, ref_scores = (np.asarray(a)[:top] for a in reference)
    cand_labels, cand_boxes, cand_scores = (np.asarray(a) for a in candidate)
    ious = box_iou(torch.from_numpy(ref_boxes).double(), torch.from_numpy(cand_boxes).double()).numpy()
    ious[ref_labels[:, None] != cand_labels[None, :]] = -1.0
    used = np.zeros(len(cand_labels), dtype=bool)
    matched, score_deltas, box_deltas = 0, [0.0], [0.0]
    for i in range(len(ref_labels)):
        row = np.where(used, -1.0, ious[i])
        j = int(row.argmax()) if len(row) else -1
        if j < 0 or row[j] < min_iou:
            continue
        used[j] = True
        matched += 1
        score_deltas.append(abs(float(ref_scores[i]) - float(cand_scores[j])))
        box_deltas.append(float(np.abs(ref_boxes[i] - cand_boxes[j]).max()))
    return {
        "matched": matched / max(len(ref_labels), 1),
        "max_score_delta": max(score_deltas),
        "max_box_delta": max(box_deltas),
    }


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


def _run_in_batches(session, pixels: np.ndarray, sizes: np.ndarray, batch: tuple[int, int, int]) -> list[np.ndarray]:  # noqa: ANN001 - onnxruntime is imported lazily
    """Run the deploy graph over all images in chunks of the largest batch it accepts (padding a fixed batch)."""
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


def _per_image(outputs: tuple[np.ndarray, ...], index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels, boxes, scores = outputs
    return labels[index], boxes[index], scores[index]


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
    ort_outputs = _run_in_batches(_ort_session(onnx_path), pixels, sizes, batch)
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

    per_image = [
        match_detections(_per_image(torch_outputs, i), _per_image(ort_outputs, i), top=min(100, topk))
        for i in range(len(images_bgr))
    ]
    largest_side = max(max(img.shape[:2]) for img in images_bgr)
    report["min_matched"] = min(r["matched"] for r in per_image)
    report["max_score_delta"] = max(r["max_score_delta"] for r in per_image)
    report["max_box_delta_px"] = max(r["max_box_delta"] for r in per_image)
    report["max_sorted_score_delta"] = float(np.abs(np.sort(ort_outputs[2], -1) - np.sort(torch_outputs[2], -1)).max())
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
        ``agreement`` (mean fraction of bilinear's top detections that discrete finds again with the same
        label and IoU >= 0.9), ``mean_abs_score_delta`` and ``max_abs_score_delta`` of the sorted top scores,
        and the per-image figures.
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
    per_image = [
        match_detections(_per_image(outputs["bilinear"], i), _per_image(outputs["discrete"], i), top=top)
        for i in range(len(images_bgr))
    ]
    score_deltas = np.abs(outputs["bilinear"][2] - outputs["discrete"][2])
    return {
        "top": top,
        "agreement": float(np.mean([r["matched"] for r in per_image])),
        "mean_abs_score_delta": float(score_deltas.mean()),
        "max_abs_score_delta": float(score_deltas.max()),
        "per_image": per_image,
    }
