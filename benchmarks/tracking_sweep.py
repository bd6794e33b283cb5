"""What the ByteTrack setting sweeps share: score each setting on the same detections, the rule that picks one,
and the table row of each setting.

The rule, fixed before any run: the highest mean IDF1 over the sequences; among the settings within 0.005 of it,
the fewest track ids in all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtdetr_deploy.eval.tracking import TrackingScore, score_tracker
from rtdetr_deploy.mot import MotSequence
from rtdetr_deploy.runtime.detections import Detections
from rtdetr_deploy.runtime.tracking import TrackerConfig

__all__ = ["IDF1_SLACK", "SweepRow", "choose", "score_setting", "table_lines"]

IDF1_SLACK = 0.005


@dataclass(frozen=True)
class SweepRow:
    """One setting's scores: its values (as shown in the table), mean IDF1/HOTA/MOTA, ids in all, per sequence."""

    setting: tuple[object, ...]
    idf1: float
    hota: float
    mota: float
    track_ids: int
    scores: tuple[TrackingScore, ...]


def score_setting(
    setting: tuple[object, ...],
    config: TrackerConfig,
    detections: list[list[Detections]],
    seqs: list[MotSequence],
    results_file: Path,
) -> SweepRow:
    """Track every sequence's detections with ``config`` and score them."""
    scores = tuple(
        score_tracker(d, s.gt, config, results_file=results_file, sequence=s.name)
        for d, s in zip(detections, seqs, strict=True)
    )
    idf1, hota, mota = (float(np.mean([getattr(s, k) for s in scores])) for k in ("idf1", "hota", "mota"))
    return SweepRow(setting, idf1, hota, mota, sum(s.track_ids for s in scores), scores)


def choose(rows: list[SweepRow]) -> SweepRow:
    """The rule: the fewest ids among the settings within ``IDF1_SLACK`` of the best mean IDF1."""
    best = max(r.idf1 for r in rows)
    return min((r for r in rows if r.idf1 >= best - IDF1_SLACK), key=lambda r: (r.track_ids, -r.idf1))


def table_lines(rows: list[SweepRow], chosen: SweepRow) -> list[str]:
    """One markdown row per setting, by descending mean IDF1: the setting's values, the scores, the ids."""
    lines = []
    for row in sorted(rows, key=lambda r: -r.idf1):
        mark = " **chosen**" if row is chosen else ""
        per = ", ".join(f"{s.track_ids}/{s.objects}" for s in row.scores)
        values = " | ".join(str(v) for v in row.setting)
        lines.append(f"| {values} | {row.idf1:.3f} | {row.hota:.3f} | {row.mota:.3f} | {row.track_ids}{mark} | {per} |")
    return lines
