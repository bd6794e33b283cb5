"""Cluttered test scenes for speed checks and smoke verification: a smooth colour field with filled shapes.

Not the synthetic dataset (no classes, no annotations): only images with structure, for timing a model or
checking that an exported graph computes what its source does on inputs with real edges and colours.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["cluttered_scenes"]


def cluttered_scenes(count: int, *, size_hw: tuple[int, int] | None = None, seed: int = 0) -> list[np.ndarray]:
    """``count`` BGR uint8 scenes.

    Args:
        count: number of images.
        size_hw: ``(height, width)`` of every image; ``None`` draws each size in 360..720 x 360..960.
        seed: fixes every pixel.
    """
    images = []
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        if size_hw is None:
            height, width = int(rng.integers(360, 720)), int(rng.integers(360, 960))
        else:
            height, width = size_hw
        image = cv2.resize(rng.integers(0, 256, (9, 16, 3), dtype=np.uint8), (width, height))
        for _ in range(int(rng.integers(4, 16))):
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            side = int(rng.integers(10, max(11, min(width, height) // 2)))
            if rng.random() < 0.5:
                cv2.rectangle(image, (x, y), (x + side, y + side // 2), color, -1)
            else:
                cv2.circle(image, (x, y), side // 2, color, -1)
        images.append(image)
    return images
