"""Measure ByteTrack's motion model and association similarity on the package's generated sequences (never the
held-out one).

A track lost behind another object is predicted forward by its Kalman filter; when the object returns, the
predicted box must still overlap it. ``benchmarks/bytetrack_switches.py`` found that most identity switches come
from predictions that drifted off the returning object. The ``trackers`` library offers two choices that bear on
this, measured here with ByteTrack's other settings fixed at the ``TrackerConfig`` defaults:

- ``motion``: the Kalman state (corners ``xyxy``, the library's default; centre, area and a fixed aspect ratio
  ``xcycsr``, SORT's; centre, width and height ``xcycwh``);
- ``match_metric``: the similarity of a predicted box and a detection (``iou``; ``biou``, IoU of boxes enlarged by
  10%; ``giou``; ``diou``), with the least similarity for a match ``match_iou``.

The model detects each sequence once; every combination tracks the same detections and is scored with the
``trackers`` library's evaluation. The rule for choosing, fixed before the run (the same as
``benchmarks/bytetrack_settings.py``): the highest mean IDF1; among the combinations within 0.005 of it, the fewest
track ids in all.

Usage: ``python -m benchmarks.bytetrack_motion MODEL.onnx [--sequences 6] [--markdown FILE]``
"""

from __future__ import annotations

import itertools
import sys

from benchmarks.tracking_common import detect_sequences, generated_sequences, sequences_parser, write_text
from benchmarks.tracking_sweep import choose, score_setting, table_lines
from rtdetr_deploy.runtime.tracking import MATCH_METRICS, MOTIONS, TrackerConfig

MATCH_IOUS = (0.05, 0.1, 0.2)


def main() -> int:
    args = sequences_parser(__doc__, sequences=6).parse_args()
    root, seqs = generated_sequences(args.sequences, prefix="rtdetr-bytetrack-motion-")
    base = TrackerConfig(name="bytetrack", frame_rate=seqs[0].frame_rate)
    detections = detect_sequences(args.model, seqs, conf=base.low_score)
    rows = []
    for setting in itertools.product(MOTIONS, MATCH_METRICS, MATCH_IOUS):
        motion, metric, match = setting
        config = TrackerConfig(
            name="bytetrack", motion=motion, match_metric=metric, match_iou=match, frame_rate=seqs[0].frame_rate
        )
        rows.append(score_setting(setting, config, detections, seqs, root / "results.txt"))
    objects = sum(s.objects for s in rows[0].scores)
    lines = [
        f"ByteTrack motion model and association similarity on {len(seqs)} generated sequences ({objects} objects "
        f"in all), {args.model.name}; low {base.low_score}, high {base.high_score}, new-track "
        f"{base.new_track_score}, lost frames {base.lost_frames}, duplicate IoU {base.duplicate_iou}. "
        "Sorted by mean IDF1; the library's defaults are xyxy, iou, 0.1.",
        "",
        "| motion | match_metric | match_iou | IDF1 | HOTA | MOTA | track ids | per sequence |",
        "|---|---|---:|---:|---:|---:|---:|---|",
        *table_lines(rows, choose(rows)),
    ]
    write_text("\n".join(lines) + "\n", args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
