"""Held-out tracking check: a sequence drawn here, apart from the package's generator, tracked by the shipped model.

The sequence (its own shape drawing, colours, background and motion; only the five class names are shared with
the training data) is written in MOTChallenge layout. The shipped tiny checkpoint is exported with the bilinear
sampling it was trained with (unless ``--model`` names an export), then:

1. frame-by-frame detection quality: recall of the visible objects and precision at the tracker's thresholds
   (greedy matching at IoU 0.5, class-agnostic like the trackers);
2. ``rtdetr-infer SEQ --track bytetrack --mot FILE``: IDF1 (the ``trackers`` library's TrackEval-equivalent
   evaluation) and the number of distinct track ids against the number of objects;
3. ``rtdetr-eval MODEL --track SEQ``: HOTA, MOTA and IDF1 of every tracker.

Usage: ``python -m benchmarks.heldout_tracking [--model M.onnx] [--out DIR] [--markdown FILE]``
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from benchmarks.tracking_common import write_text
from rtdetr_deploy.mot import gt_row, seqinfo_text

SIZE_HW = (336, 448)
FRAMES = 120
CLASSES = ("circle", "square", "triangle", "star", "cross")


def _outline(kind: str, center: np.ndarray, radius: float, turn: float) -> np.ndarray:
    """Polygon ``[N, 2]`` of one shape, drawn from scratch (not the package's shape code)."""
    if kind == "circle":
        angles = np.linspace(0, 2 * math.pi, 40, endpoint=False)
        radii = np.full(40, radius)
    elif kind == "square":
        angles, radii = np.arange(4) * math.pi / 2 + math.pi / 4, np.full(4, radius)
    elif kind == "triangle":
        angles, radii = np.arange(3) * 2 * math.pi / 3 - math.pi / 2, np.full(3, radius * 1.1)
    elif kind == "star":
        angles = np.arange(10) * math.pi / 5 - math.pi / 2
        radii = np.where(np.arange(10) % 2 == 0, radius, radius * 0.45)
    else:
        arm = radius * 0.36
        pts = [(-arm, -radius), (arm, -radius), (arm, -arm), (radius, -arm), (radius, arm), (arm, arm), (arm, radius)]
        pts += [(-arm, radius), (-arm, arm), (-radius, arm), (-radius, -arm), (-arm, -arm)]
        xy = np.array(pts)
        rot = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
        return xy @ rot.T + center
    angles = angles + turn
    return np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1) + center


def render(seed: int = 2026) -> tuple[list[np.ndarray], list[list[tuple[int, list[float], float]]]]:
    """BGR frames and per-frame ``(id, [x, y, w, h], visible share)`` of each object with 40 visible pixels or more."""
    rng = np.random.default_rng(seed)
    height, width = SIZE_HW
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([90 + 60 * xs / width, 120 + 50 * np.sin(ys / 37), 150 - 70 * ys / height], axis=-1)
    for _ in range(8):  # distractors: straight strokes, none of them a shape class
        x0, y0, x1, y1 = (int(v) for v in rng.uniform(0, 1, 4) * [width, height, width, height])
        cv2.line(base, (x0, y0), (x1, y1), tuple(float(v) for v in rng.uniform(60, 200, 3)), 2, cv2.LINE_AA)
    # Five objects on straight paths; each path crosses others at different times (one passes over the other).
    starts = np.array([[40, 80], [410, 105], [130, 40], [330, 300], [50, 300]], np.float64)
    ends = np.array([[410, 90], [40, 80], [120, 300], [320, 40], [410, 45]], np.float64)
    radii = rng.uniform(26, 36, len(starts))
    colors = [(30, 30, 220), (220, 70, 20), (0, 210, 255), (200, 30, 200), (20, 130, 255)]  # BGR, saturated
    frames, truth = [], []
    for t in range(FRAMES):
        canvas = base.copy()
        masks = []
        for k, (start, end) in enumerate(zip(starts, ends, strict=True)):
            center = start + (end - start) * (t / (FRAMES - 1))
            polygon = _outline(CLASSES[k % len(CLASSES)], center, radii[k], turn=0.02 * t * (k + 1))
            mask = np.zeros((height, width), np.uint8)
            cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1, lineType=cv2.LINE_8)
            canvas[mask > 0] = colors[k]
            masks = [(m & (mask == 0), a) for m, a in masks] + [(mask > 0, int(mask.sum()))]
        rows = []
        for object_id, (mask, area) in enumerate(masks, start=1):
            py, px = np.nonzero(mask)
            if len(px) >= 40:
                box = [float(px.min()), float(py.min()), float(np.ptp(px) + 1), float(np.ptp(py) + 1)]
                rows.append((object_id, box, len(px) / area))
        noisy = canvas + rng.normal(0, 4, canvas.shape)
        frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
        truth.append(rows)
    return frames, truth


def write_sequence(root: Path, name: str = "heldout-01") -> Path:
    frames, truth = render()
    folder = root / name
    (folder / "img1").mkdir(parents=True, exist_ok=True)
    (folder / "gt").mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames, start=1):
        cv2.imwrite(str(folder / "img1" / f"{index:06d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 93])
    lines = [gt_row(i, oid, box, visibility=v) for i, rows in enumerate(truth, start=1) for oid, box, v in rows]
    (folder / "gt" / "gt.txt").write_text("\n".join(lines) + "\n")
    height, width = SIZE_HW
    (folder / "seqinfo.ini").write_text(seqinfo_text(name=name, frames=FRAMES, frame_rate=25, size_wh=(width, height)))
    return folder


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a, area_b = np.prod(a[:, 2:] - a[:, :2], axis=1), np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None] - inter)


def detection_quality(model: Path, seq: Path, threshold: float) -> tuple[float, float]:
    """Frame-by-frame recall and precision at ``threshold`` (greedy by score, IoU >= 0.5, class-agnostic); a
    detection of a mostly hidden (not considered) object counts neither way, as in the tracking evaluation."""
    from rtdetr_deploy.runtime.detector import Detector

    gt = np.loadtxt(seq / "gt" / "gt.txt", delimiter=",", ndmin=2)
    tp = fp = total = 0
    with Detector(model, conf=threshold) as detector:
        for index, path in enumerate(sorted((seq / "img1").glob("*.jpg")), start=1):
            found = detector(cv2.imread(str(path)))
            rows = gt[gt[:, 0] == index]
            boxes, considered = rows[:, 2:6].copy(), rows[:, 6] == 1
            boxes[:, 2:] += boxes[:, :2]
            total += int(considered.sum())
            free = np.ones(len(boxes), bool)
            overlaps = _iou(found.boxes_xyxy, boxes) if len(boxes) and len(found) else np.zeros((len(found), 0))
            for row in overlaps:
                best = int(np.argmax(np.where(free, row, -1))) if free.any() else -1
                if best >= 0 and row[best] >= 0.5:
                    free[best] = False
                    tp += int(considered[best])
                else:
                    fp += 1
    return tp / max(total, 1), tp / max(tp + fp, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="exported .onnx (default: export the shipped checkpoint)")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--markdown", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    from trackers.eval import evaluate_mot_sequence

    from rtdetr_deploy.data import pretrained_tiny
    from rtdetr_deploy.runtime.tracking import TrackerConfig

    out = args.out or Path(tempfile.mkdtemp(prefix="rtdetr-heldout-"))
    model = args.model
    if model is None:
        weights = pretrained_tiny()
        export = ["rtdetr-export", str(weights), "--sampling", "bilinear", "--dynamic-batch", "1,4,16", "-o", str(out)]
        subprocess.run(export, check=True, stdout=subprocess.DEVNULL)
        model = out / f"{weights.stem}.onnx"
    seq = write_sequence(out)
    config = TrackerConfig()
    lines = [f"held-out sequence {seq.name}: {FRAMES} frames {SIZE_HW[1]}x{SIZE_HW[0]}, model {model.name}", ""]
    for label, threshold in (("new-track", config.new_track_score), ("high", config.high_score)):
        recall, precision = detection_quality(model, seq, threshold)
        lines.append(f"- detection at the {label} score {threshold}: recall {recall:.3f}, precision {precision:.3f}")
    mot = out / "heldout.bytetrack.txt"
    infer = ["rtdetr-infer", str(seq), "--model", str(model), "--track", "bytetrack", "--mot", str(mot)]
    subprocess.run(infer, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = evaluate_mot_sequence(seq / "gt" / "gt.txt", mot, metrics=["CLEAR", "HOTA", "Identity"])
    ids = len(np.unique(np.loadtxt(mot, delimiter=",", ndmin=2)[:, 1]))
    objects = len(np.unique(np.loadtxt(seq / "gt" / "gt.txt", delimiter=",", ndmin=2)[:, 1]))
    lines.append(
        f"- `rtdetr-infer --track bytetrack --mot FILE`: IDF1 {result.Identity.IDF1:.3f}, HOTA {result.HOTA.HOTA:.3f}, "
        f"MOTA {result.CLEAR.MOTA:.3f}, {ids} track ids for {objects} objects ({ids / objects:.2f}x)"
    )
    table = subprocess.run(
        ["rtdetr-eval", str(model), "--track", str(seq)], check=True, capture_output=True, text=True
    ).stdout
    text = "\n".join(lines) + "\n\n`rtdetr-eval MODEL --track SEQ`:\n\n" + table
    write_text(text, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
