"""What the tracking measurements share: their command line, the generated sequences they run on, one detection
pass over them, and how they hand out the result (printed, and written to ``--markdown FILE`` when given)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rtdetr_deploy.atomic import atomic_path
from rtdetr_deploy.data.tracking import TrackingSequenceConfig, generate_tracking_sequence
from rtdetr_deploy.eval.tracking import detect_sequence
from rtdetr_deploy.mot import MotSequence, read_sequence
from rtdetr_deploy.runtime.detections import Detections
from rtdetr_deploy.runtime.detector import Detector

__all__ = ["detect_sequences", "generated_sequences", "sequences_parser", "write_text"]


def sequences_parser(doc: str, *, sequences: int) -> argparse.ArgumentParser:
    """The parser of ``MODEL.onnx [--sequences N] [--markdown FILE]``, described by ``doc``'s first line."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--sequences", type=int, default=sequences)
    parser.add_argument("--markdown", type=Path)
    return parser


def generated_sequences(count: int, *, prefix: str) -> tuple[Path, list[MotSequence]]:
    """A new temporary folder (named from ``prefix``) and ``count`` sequences generated in it, seeds 0 to count-1,
    named ``synth-01``, ``synth-02``, ..."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    seqs = [
        read_sequence(generate_tracking_sequence(root, f"synth-{i + 1:02d}", TrackingSequenceConfig(seed=i)))
        for i in range(count)
    ]
    return root, seqs


def detect_sequences(model: Path, seqs: list[MotSequence], *, conf: float) -> list[list[Detections]]:
    """The detections of ``model`` at score ``conf`` on every frame of each sequence (batches of up to 4)."""
    with Detector(model, conf=conf) as detector:
        return [detect_sequence(detector, seq.frames, batch=min(4, detector.max_batch)) for seq in seqs]


def write_text(text: str, markdown: Path | None) -> None:
    """Print ``text``, and write it to ``markdown`` (atomically) when given."""
    print(text, end="")
    if markdown is not None:
        with atomic_path(markdown) as tmp:
            tmp.write_text(text)
