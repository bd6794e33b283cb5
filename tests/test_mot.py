"""MOTChallenge text: the results writer against a hand-made file, ground-truth rows, and the sequence layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rtdetr_deploy.data.tracking import TrackingSequenceConfig, generate_tracking_sequence
from rtdetr_deploy.mot import gt_row, is_sequence, read_sequence, result_row
from rtdetr_deploy.runtime.detections import Detections
from rtdetr_deploy.runtime.mot_results import MotResultsWriter


def _tracked(boxes: list[list[float]], scores: list[float], ids: list[int]) -> Detections:
    n = len(ids)
    return Detections(
        boxes_xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
        scores=np.asarray(scores, np.float32),
        class_ids=np.zeros(n, np.int64),
        class_names=("thing",) * n,
        category_ids=np.ones(n, np.int64),
        track_ids=np.asarray(ids, np.int64),
    )


def test_writer_matches_a_hand_made_file(tmp_path: Path) -> None:
    path = tmp_path / "tracks.txt"
    writer = MotResultsWriter(path)
    writer.add(1, _tracked([[10, 20, 50, 80], [100.5, 0, 120, 30.25]], [0.9, 0.5], [1, 2]))
    writer.add(2, _tracked([], [], []))
    writer.add(3, _tracked([[12, 21, 52, 81]], [0.875], [1]))
    assert not path.exists()  # published whole, on close
    writer.close()
    assert path.read_text() == (
        "1,1,10.00,20.00,40.00,60.00,0.9000,-1,-1,-1\n"
        "1,2,100.50,0.00,19.50,30.25,0.5000,-1,-1,-1\n"
        "3,1,12.00,21.00,40.00,60.00,0.8750,-1,-1,-1\n"
    )
    assert writer.track_ids == {1, 2} and writer.frames == 3


def test_writer_refuses_untracked_detections_and_frame_zero(tmp_path: Path) -> None:
    untracked = Detections.empty()
    with pytest.raises(ValueError, match="track_ids"):
        MotResultsWriter(tmp_path / "t.txt").add(1, untracked)
    with pytest.raises(ValueError, match="count from 1"):
        result_row(0, 1, (0, 0, 1, 1), 0.5)
    with pytest.raises(ValueError, match="file name"):
        MotResultsWriter(tmp_path)


def test_ground_truth_rows_mark_mostly_hidden_objects_as_distractors() -> None:
    assert gt_row(4, 2, (1, 2, 3, 4), visibility=0.8) == "4,2,1.00,2.00,3.00,4.00,1,1,0.800"
    assert gt_row(4, 2, (1, 2, 3, 4), visibility=0.1) == "4,2,1.00,2.00,3.00,4.00,0,8,0.100"


def test_generated_sequence_reads_back(tmp_path: Path) -> None:
    config = TrackingSequenceConfig(seed=3, frames=4, objects=2, size_hw=(96, 128))
    folder = generate_tracking_sequence(tmp_path, "seq", config)
    seq = read_sequence(folder)
    assert seq.name == "seq" and len(seq.frames) == 4 and seq.size_wh == (128, 96) and seq.frame_rate == 25
    assert is_sequence(folder) and is_sequence(folder / "img1") and not is_sequence(tmp_path)
    rows = np.loadtxt(seq.gt, delimiter=",", ndmin=2)
    assert set(rows[:, 0].astype(int)) <= {1, 2, 3, 4} and set(rows[:, 1].astype(int)) <= {1, 2}
    # Boxes lie inside the frame (visible extents).
    assert (rows[:, 2] >= 0).all() and (rows[:, 2] + rows[:, 4] <= 128).all() and (rows[:, 3] + rows[:, 5] <= 96).all()


def test_a_folder_without_seqinfo_is_not_a_sequence(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="seqinfo.ini"):
        read_sequence(tmp_path)
