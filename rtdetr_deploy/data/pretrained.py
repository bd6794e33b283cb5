"""The checkpoints shipped with the package: the ``tiny`` preset trained on the embedded synthetic set.

``tiny_synthetic.pth`` was trained with bilinear sampling; ``tiny_synthetic_discrete.pth`` is the same model
fine-tuned for a few epochs with discrete sampling (the official "dsp" recipe), so that the default export
(discrete sampling, no GridSample) keeps its accuracy. They let the main job start from a detector that
already works on the embedded data, so a few minutes of fine-tuning on a CPU end in a sharp model.
``tools/train_demo_weights.py`` regenerates both and records how; the same record travels inside each
checkpoint (its ``provenance`` entry). Each loads like any other
checkpoint (``rtdetr_deploy.load_model``, ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PRETRAINED_TINY", "PRETRAINED_TINY_DISCRETE", "pretrained_tiny"]

PRETRAINED_TINY = Path(__file__).resolve().parent / "weights" / "tiny_synthetic.pth"
PRETRAINED_TINY_DISCRETE = PRETRAINED_TINY.with_name("tiny_synthetic_discrete.pth")


def pretrained_tiny(*, sampling: str = "bilinear") -> Path:
    """Path of a shipped ``tiny`` checkpoint (5 shape classes, 256 px, FP16 storage).

    Args:
        sampling: the sampling it was trained with: ``"bilinear"`` (trained from scratch) or ``"discrete"``
            (that model fine-tuned with discrete sampling: what the default export should start from).

    Raises:
        ValueError: another ``sampling``.
        FileNotFoundError: the package was installed without it.
    """
    paths = {"bilinear": PRETRAINED_TINY, "discrete": PRETRAINED_TINY_DISCRETE}
    if sampling not in paths:
        raise ValueError(f"sampling must be 'bilinear' or 'discrete', got {sampling!r}")
    if not paths[sampling].is_file():
        raise FileNotFoundError(
            f"the shipped checkpoint {paths[sampling]} is missing; regenerate it with "
            "python tools/train_demo_weights.py, or run rtdetr-demo --from-scratch"
        )
    return paths[sampling]
