"""The checkpoint shipped with the package: the ``tiny`` preset trained on the embedded synthetic set.

It lets the main job start from a detector that already works on the embedded data, so a few minutes of
fine-tuning on a CPU end in a sharp model. ``tools/train_demo_weights.py`` regenerates it and records how it
was made; the same record travels inside the checkpoint (its ``provenance`` entry). It loads like any other
checkpoint (``rtdetr_deploy.load_model``, ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PRETRAINED_TINY", "pretrained_tiny"]

PRETRAINED_TINY = Path(__file__).resolve().parent / "weights" / "tiny_synthetic.pth"


def pretrained_tiny() -> Path:
    """Path of the shipped ``tiny`` checkpoint (5 shape classes, 256 px, bilinear sampling, FP16 storage).

    Raises:
        FileNotFoundError: the package was installed without it.
    """
    if not PRETRAINED_TINY.is_file():
        raise FileNotFoundError(
            f"the shipped checkpoint {PRETRAINED_TINY} is missing; regenerate it with "
            "python tools/train_demo_weights.py, or run rtdetr-demo --from-scratch"
        )
    return PRETRAINED_TINY
