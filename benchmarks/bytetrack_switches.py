"""Why ByteTrack gives an object a new id on the package's generated sequences (never the held-out one).

Tracks the generated sequences with the ``TrackerConfig`` defaults and, at every identity switch (a ground-truth
object matched at IoU 0.5 by a track id other than the one it last had), records how many frames the object went
untracked, whether the old track was still kept by the tracker (within its lost-track budget), and the IoU between
the old track's predicted box and the box that took the new id. A kept track whose prediction no longer overlaps
cannot be re-associated by keeping it longer or by lowering the matching IoU.

Reads the tracklets of the ``trackers`` library's ByteTrack (``tracks``, ``tracker_id``, ``get_state_bbox``): a
measurement aid, not an API the package relies on.

Usage: ``python -m benchmarks.bytetrack_switches MODEL.onnx [--sequences 6] [--markdown FILE]``
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from benchmarks.tracking_common import detect_sequences, generated_sequences, sequences_parser, write_text
from rtdetr_deploy.runtime.tracking import Tracker, TrackerConfig

GAP = 5  # frames untracked from which a switch counts as a return after occlusion


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(rb - lt, 0, None)))
    return inter / max(float(np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2])) - inter, 1e-9)


def switches(detections: list, gt_file: Path, config: TrackerConfig) -> list[tuple[int, float | None]]:
    """``(frames untracked, IoU of the old track's prediction or None if it was dropped)`` per identity switch."""
    gt = np.loadtxt(gt_file, delimiter=",", ndmin=2)
    tracker, last, found = Tracker(config), {}, []
    for frame, detected in enumerate(detections, start=1):
        out = tracker.update(detected)
        kept = {t.tracker_id + 1: t.get_state_bbox() for t in tracker._tracker.tracks if t.tracker_id >= 0}
        rows = gt[(gt[:, 0] == frame) & (gt[:, 6] == 1)]
        boxes = rows[:, 2:6].copy()
        boxes[:, 2:] += boxes[:, :2]
        for box, track_id in zip(out.boxes_xyxy, out.track_ids, strict=True):
            overlaps = [_iou(box, b) for b in boxes]
            if not overlaps or max(overlaps) < 0.5:
                continue
            object_id = int(rows[int(np.argmax(overlaps)), 1])
            if object_id in last and last[object_id][0] != track_id:
                old, seen = last[object_id]
                found.append((frame - seen, _iou(kept[old], box) if old in kept else None))
            last[object_id] = (int(track_id), frame)
    return found


def main() -> int:
    args = sequences_parser(__doc__, sequences=6).parse_args()
    _, seqs = generated_sequences(args.sequences, prefix="rtdetr-switches-")
    config = TrackerConfig(name="bytetrack", frame_rate=seqs[0].frame_rate)
    detections = detect_sequences(args.model, seqs, conf=config.low_score)
    events = [e for d, s in zip(detections, seqs, strict=True) for e in switches(d, s.gt, config)]
    returns = [(gap, iou) for gap, iou in events if gap >= GAP]
    kept = [iou for _, iou in returns if iou is not None]
    text = (
        f"ByteTrack ({config}) on {len(seqs)} generated sequences, {args.model.name}: {len(events)} identity "
        f"switches, {len(returns)} of them after the object went untracked for {GAP} frames or more. Of those, "
        f"the old track was still kept in {len(kept)}; its predicted box overlapped the returning box by IoU "
        f"< 0.05 in {sum(i < 0.05 for i in kept)}, < 0.1 in {sum(i < 0.1 for i in kept)} (median IoU "
        f"{np.median(kept) if kept else float('nan'):.3f}).\n"
    )
    write_text(text, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
