"""Measure ByteTrack's track-keeping settings on the package's generated sequences (never the held-out one).

The settings that decide whether an object hidden for a while by another comes back under its old id:

- ``lost_frames``: how long a lost track is kept for re-association (frames at 30 fps, scaled by the source's);
- ``match_iou``: the least IoU between a track's predicted box and a detection, in both associations;
- ``low_score``: the score from which a detection may continue a track in the second association;
- ``min_frames``: consecutive matched frames before a track is given an id.

The model detects each sequence once; every combination then tracks the same detections and is scored with the
``trackers`` library's evaluation (IDF1, HOTA, MOTA) and the count of distinct track ids. The rule for choosing,
fixed before the run: the highest mean IDF1 over the sequences; among the combinations within 0.005 of it, the
fewest track ids in all. High and new-track scores stay at the measured ``TrackerConfig`` defaults.

Usage: ``python -m benchmarks.bytetrack_settings MODEL.onnx [--sequences 6] [--markdown FILE]``
"""

from __future__ import annotations

import itertools
import sys

from benchmarks.tracking_common import detect_sequences, generated_sequences, sequences_parser, write_text
from benchmarks.tracking_sweep import choose, score_setting, table_lines
from rtdetr_deploy.runtime.tracking import TrackerConfig

LOST_FRAMES = (30, 60, 90)
MATCH_IOUS = (0.05, 0.1, 0.2)
LOW_SCORES = (0.1, 0.2, 0.3)
MIN_FRAMES = (1, 2, 3)


def main() -> int:
    args = sequences_parser(__doc__, sequences=6).parse_args()
    root, seqs = generated_sequences(args.sequences, prefix="rtdetr-bytetrack-")
    detections = detect_sequences(args.model, seqs, conf=min(LOW_SCORES))
    rows = []
    for setting in itertools.product(LOST_FRAMES, MATCH_IOUS, LOW_SCORES, MIN_FRAMES):
        lost, match, low, min_frames = setting
        config = TrackerConfig(
            name="bytetrack", low_score=low, lost_frames=lost, min_frames=min_frames, match_iou=match,
            frame_rate=seqs[0].frame_rate,
        )  # fmt: skip
        rows.append(score_setting(setting, config, detections, seqs, root / "results.txt"))
    objects = sum(s.objects for s in rows[0].scores)
    lines = [
        f"ByteTrack settings on {len(seqs)} generated sequences ({objects} objects in all), {args.model.name}; "
        f"high 0.6, new-track 0.8, duplicate IoU 0.7. Sorted by mean IDF1.",
        "",
        "| lost_frames | match_iou | low_score | min_frames | IDF1 | HOTA | MOTA | track ids | per sequence |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        *table_lines(rows, choose(rows)),
    ]
    text = "\n".join(lines) + "\n"
    write_text(text, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
