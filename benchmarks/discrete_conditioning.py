"""How much the discrete sampling operator amplifies tiny differences in the sampling locations.

An engine that computes the sampling locations with other float arithmetic (fused multiply-adds, another order of
operations, FP16) moves some locations across a pixel's rounding boundary, and each such location gathers the
neighbouring pixel. This measures, in PyTorch, what that costs a trained checkpoint: every location is moved by
``+-noise`` (random signs, fixed seed) and the detections are compared with the unmoved ones on the export's four
verification scenes (decided top-20 at a 1e-3 margin, as the engine checks do). It is the floor under any
engine's agreement with a discrete graph: an engine whose location arithmetic differs by about ``noise`` cannot be
expected to agree more closely than this.

Usage: ``python -m benchmarks.discrete_conditioning CKPT.pth [CKPT.pth ...] [--noise 1e-6,1e-5,1e-4,1e-3]
[--markdown FILE]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

import rtdetr_deploy.models.deformable_attention as deformable
from benchmarks.tracking_common import write_text
from rtdetr_deploy.agreement import compare_detections
from rtdetr_deploy.export.verify import verification_images
from rtdetr_deploy.metadata import Preprocessing
from rtdetr_deploy.models.checkpoint import load_model
from rtdetr_deploy.models.postprocess import DeployModel, PostProcessor
from rtdetr_deploy.runtime.preprocess import preprocess

OUTPUTS = ("labels", "boxes", "scores")


class MovedLocations:
    """Replaces the operator's index rule with one that first moves each location by ``+-noise``; counts flips."""

    def __init__(self, noise: float, seed: int = 0) -> None:
        self.noise, self.generator = noise, torch.Generator().manual_seed(seed)
        self.flips = self.indices = 0
        self._rule = deformable.discrete_indices

    def __call__(self, locations: torch.Tensor, height: int, width: int, *, where: str = "") -> torch.Tensor:
        signs = torch.randint(0, 2, locations.shape, generator=self.generator).to(locations.dtype) * 2 - 1
        moved = self._rule(locations + signs * self.noise, height, width, where=where)
        self.flips += int((moved != self._rule(locations, height, width, where=where)).sum())
        self.indices += moved.numel()
        return moved

    def __enter__(self) -> MovedLocations:
        deformable.discrete_indices = self
        return self

    def __exit__(self, *exc: object) -> None:
        deformable.discrete_indices = self._rule


def _detect(deploy: torch.nn.Module, pixels: np.ndarray, sizes: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        outputs = deploy(torch.from_numpy(pixels), torch.from_numpy(sizes))
    return {name: value.numpy() for name, value in zip(OUTPUTS, outputs, strict=True)}


def conditioning_rows(weights: Path, noises: list[float]) -> list[str]:
    model = load_model(weights, sampling="discrete")
    size = model.info.input_size
    model.set_eval_size(size)
    deploy = DeployModel(model.deploy(), PostProcessor(topk=300)).eval()
    pixels, sizes = preprocess(verification_images(None), input_size=size, preprocessing=Preprocessing())
    reference = _detect(deploy, pixels, sizes)
    rows = []
    for noise in noises:
        with MovedLocations(noise) as moved:
            agreement = compare_detections(reference, _detect(deploy, pixels, sizes), topn=20, margin=1e-3)
        rows.append(
            f"| {weights.parent.name}/{weights.name} | {noise:g} | {moved.flips} of {moved.indices} "
            f"({moved.flips / moved.indices:.3%}) | {agreement['compared']} | {agreement['matched']:.0%} "
            f"| {agreement['max_score_delta']:.2e} | {agreement['max_box_delta_px']:.2f} |"
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, nargs="+", help="checkpoints (run with discrete sampling)")
    parser.add_argument("--noise", default="1e-6,1e-5,1e-4,1e-3", help="location moves, in [0, 1] image units")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here")
    args = parser.parse_args()
    noises = [float(v) for v in args.noise.split(",")]
    lines = [
        "Discrete sampling: detections with every sampling location moved by +-noise, against the unmoved ones "
        "(PyTorch, the 4 verification scenes, decided top-20 at a 1e-3 margin).",
        "",
        "| checkpoint | noise | indices changed | decided | found again | max score diff | max box diff px |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for weights in args.weights:
        lines += conditioning_rows(weights, noises)
    write_text("\n".join(lines) + "\n", args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
