"""Helpers shared by tests (importable as ``helpers`` through pytest's pythonpath)."""

from __future__ import annotations

# Classes of the tiny test checkpoint: non-contiguous category ids, as in COCO.
CLASS_NAMES = ["circle", "square", "triangle"]
CATEGORY_IDS = [1, 5, 9]


def randomize_heads(model, *, seed: int = 0, std: float = 0.05) -> None:  # noqa: ANN001 - torch is optional here
    """Give the zero-initialised box heads and the class heads random weights so outputs vary per query."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "bbox_head" in name or "score_head" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * std)
