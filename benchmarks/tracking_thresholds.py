"""Measure the tracker thresholds on the NMS-free scores of a model, on the package's tracking sequences.

1. The score distribution: frame-by-frame recall and precision of the model's detections at score thresholds
   (greedy matching at IoU 0.5, class-agnostic like the trackers), and how many pairs of boxes overlap by IoU 0.7
   or more (one object given two queries: the duplicates a tracker must not see twice).
2. A sweep of (low, high, new-track) thresholds and of the duplicate IoU for every tracker: HOTA, MOTA, IDF1 and
   the track-id count, averaged over the sequences.

The sequences are the generator's (``rtdetr_deploy.data.tracking``, seeds 0..N-1), never the held-out one of
``benchmarks/heldout_tracking.py``.

Usage: ``python -m benchmarks.tracking_thresholds MODEL.onnx [--sequences 3] [--markdown FILE]``
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

from benchmarks.tracking_common import detect_sequences, generated_sequences, sequences_parser, write_text
from rtdetr_deploy.eval.tracking import score_tracker
from rtdetr_deploy.runtime.tracking import TRACKERS, TrackerConfig

SCORES = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
GRID = ((0.1, 0.5, 0.7), (0.2, 0.6, 0.8), (0.3, 0.6, 0.7), (0.1, 0.6, 0.8), (0.3, 0.7, 0.9))
DUPLICATE_IOUS = (None, 0.8, 0.7)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a, area_b = np.prod(a[:, 2:] - a[:, :2], axis=1), np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


def score_distribution(detections: list, gt_file: Path) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Scores of true and false detections, the count of considered objects, and duplicate pairs (IoU >= 0.7)."""
    gt = np.loadtxt(gt_file, delimiter=",", ndmin=2)
    true, false, total, duplicates = [], [], 0, 0
    for index, found in enumerate(detections, start=1):
        rows = gt[gt[:, 0] == index]
        boxes, considered = rows[:, 2:6].copy(), rows[:, 6] == 1
        boxes[:, 2:] += boxes[:, :2]
        total += int(considered.sum())
        pairs = _iou(found.boxes_xyxy, found.boxes_xyxy) >= 0.7
        duplicates += int(np.triu(pairs, 1).sum())
        free = np.ones(len(boxes), bool)
        overlaps = _iou(found.boxes_xyxy, boxes) if len(boxes) else np.zeros((len(found), 0))
        for score, row in zip(found.scores, overlaps, strict=True):
            best = int(np.argmax(np.where(free, row, -1))) if free.any() else -1
            if best >= 0 and row[best] >= 0.5:
                free[best] = False
                if considered[best]:
                    true.append(score)
            else:
                false.append(score)
    return np.asarray(true), np.asarray(false), total, duplicates


def main() -> int:
    args = sequences_parser(__doc__, sequences=3).parse_args()
    root, seqs = generated_sequences(args.sequences, prefix="rtdetr-thresholds-")
    detections = detect_sequences(args.model, seqs, conf=min(SCORES))
    true, false, total, duplicates = (
        list(x) for x in zip(*[score_distribution(d, s.gt) for d, s in zip(detections, seqs, strict=True)], strict=True)
    )
    true, false, total = np.concatenate(true), np.concatenate(false), sum(total)
    lines = [f"Score distribution of {args.model.name} on {len(seqs)} generated sequences ({total} visible objects; "
             f"{sum(duplicates)} pairs of boxes at IoU >= 0.7 above score {min(SCORES)}):", "",
             "| score >= | recall | precision |", "|---:|---:|---:|"]  # fmt: skip
    for t in SCORES:
        tp, fp = int((true >= t).sum()), int((false >= t).sum())
        lines.append(f"| {t:g} | {tp / max(total, 1):.3f} | {tp / max(tp + fp, 1):.3f} |")
    lines += ["", "| tracker | duplicate IoU | low | high | new | HOTA | MOTA | IDF1 | ids / objects |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    scratch = root / "results.txt"
    for name in TRACKERS:
        for duplicate_iou in DUPLICATE_IOUS:
            for low, high, new in GRID:
                config = TrackerConfig(name=name, low_score=low, high_score=high, new_track_score=new)
                config = dataclasses.replace(config, duplicate_iou=duplicate_iou, frame_rate=seqs[0].frame_rate)
                scores = [
                    score_tracker(d, s.gt, config, results_file=scratch, sequence=s.name)
                    for d, s in zip(detections, seqs, strict=True)
                ]
                mean = {k: float(np.mean([getattr(s, k) for s in scores])) for k in ("hota", "mota", "idf1")}
                ids = ", ".join(f"{s.track_ids}/{s.objects}" for s in scores)
                lines.append(
                    f"| {name} | {duplicate_iou or '-'} | {low} | {high} | {new} | {mean['hota']:.3f} | "
                    f"{mean['mota']:.3f} | {mean['idf1']:.3f} | {ids} |"
                )
    text = "\n".join(lines) + "\n"
    write_text(text, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
