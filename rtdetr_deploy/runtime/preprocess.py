"""Images to the ``images`` / ``orig_target_sizes`` inputs: RGB, plain resize, ``x * scale``, optional mean/std.

This is the official RT-DETRv2 deploy preprocessing (no letterbox): every image is stretched to the model's
``(height, width)``, and the boxes come back in original pixels because the graph scales them by the original
``(width, height)``. All per-pixel work is done by OpenCV and vectorised numpy on the whole batch.

A model exported with ``--fuse-preprocess`` does this inside its graph (``Preprocessing.fused``): it takes the
frames themselves, stacked by ``stack_frames``; frames of different sizes cannot share such a batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ..metadata import Preprocessing

__all__ = ["to_bgr8", "preprocess", "stack_frames"]


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Any decoded image as a ``[H, W, 3]`` BGR uint8 array.

    Grayscale (``[H, W]`` or ``[H, W, 1]``) is replicated, BGRA drops its alpha and 16-bit images keep their
    8 most significant bits (as OpenCV's ``imread`` does). 8-bit BGR passes through unchanged.

    Raises:
        ValueError: not a numpy array, zero-sized, or an unsupported dtype or channel count.
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected an image as a numpy array, got {type(image).__name__}")
    if image.size == 0 or image.ndim not in (2, 3):
        raise ValueError(f"expected an image of shape [H, W] or [H, W, C] with H, W > 0, got {list(image.shape)}")
    if image.dtype == np.uint16:
        image = np.right_shift(image, 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 or uint16 image, got {image.dtype}; convert float images to uint8 first")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if channels != 3:
        raise ValueError(f"expected 1, 3 or 4 channels, got {channels}")
    return image


def preprocess(
    images: Sequence[np.ndarray], *, input_size: tuple[int, int], preprocessing: Preprocessing
) -> tuple[np.ndarray, np.ndarray]:
    """Batch images for the model.

    Args:
        images: ``B`` BGR images of any size (anything ``to_bgr8`` accepts).
        input_size: model ``(height, width)``.
        preprocessing: colour order, scale and optional mean/std from the model's metadata.

    Returns:
        images ``[B, 3, H, W]`` float32 (RGB in [0, 1] for the official preprocessing) and
        orig_sizes ``[B, 2]`` int64 original ``(width, height)``.
    """
    if not len(images):
        raise ValueError("no images to preprocess")
    height, width = input_size
    tensor = np.empty((len(images), 3, height, width), np.float32)
    orig_sizes = np.empty((len(images), 2), np.int64)
    scale = np.float32(preprocessing.scale)
    for i, image in enumerate(images):
        image = to_bgr8(image)
        orig_sizes[i] = image.shape[1], image.shape[0]
        resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        if preprocessing.color == "rgb":
            resized = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
        # One pass per image: HWC uint8 -> CHW float32 scaled, written straight into the batch (2.5x faster
        # than converting the whole NHWC batch and copying it to NCHW afterwards).
        np.multiply(resized.transpose(2, 0, 1), scale, out=tensor[i], dtype=np.float32)
    if preprocessing.mean is not None:
        tensor -= np.asarray(preprocessing.mean, np.float32).reshape(1, 3, 1, 1)
    if preprocessing.std is not None:
        tensor /= np.asarray(preprocessing.std, np.float32).reshape(1, 3, 1, 1)
    return tensor, orig_sizes


def stack_frames(images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Batch same-size frames for a fused-preprocessing model (its graph converts, resizes and scales them).

    Args:
        images: ``B`` BGR images of one size (anything ``to_bgr8`` accepts).

    Returns:
        frames ``[B, H, W, 3]`` BGR uint8 (C-contiguous) and orig_sizes ``[B, 2]`` int64 ``(width, height)``.

    Raises:
        ValueError: no images, or images of different sizes (run them in separate batches).
    """
    if not len(images):
        raise ValueError("no images to preprocess")
    frames = [to_bgr8(image) for image in images]
    sizes_hw = sorted({frame.shape[:2] for frame in frames})
    if len(sizes_hw) > 1:
        shown = ", ".join(f"{h}x{w}" for h, w in sizes_hw)
        raise ValueError(f"frames of different sizes ({shown}, HxW) cannot share a batch of a fused model")
    height, width = sizes_hw[0]
    orig_sizes = np.tile(np.asarray([[width, height]], np.int64), (len(frames), 1))
    return np.stack(frames), orig_sizes
