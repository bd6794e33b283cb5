"""The embedded default data: a synthetic COCO-format detection set and video (numpy and OpenCV only)."""

from .pretrained import PRETRAINED_TINY, PRETRAINED_TINY_DISCRETE, pretrained_tiny
from .scenes import cluttered_scenes
from .shapes import CATEGORIES
from .synthetic import SyntheticConfig, SyntheticPaths, default_root, ensure_synthetic, generate_synthetic

__all__ = [
    "CATEGORIES",
    "PRETRAINED_TINY",
    "PRETRAINED_TINY_DISCRETE",
    "pretrained_tiny",
    "cluttered_scenes",
    "SyntheticConfig",
    "SyntheticPaths",
    "default_root",
    "ensure_synthetic",
    "generate_synthetic",
]
