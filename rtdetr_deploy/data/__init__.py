"""The embedded default data: a synthetic COCO-format detection set and video (numpy and OpenCV only)."""

from .shapes import CATEGORIES
from .synthetic import SyntheticConfig, SyntheticPaths, default_root, ensure_synthetic, generate_synthetic

__all__ = ["CATEGORIES", "SyntheticConfig", "SyntheticPaths", "default_root", "ensure_synthetic", "generate_synthetic"]
