"""Preprocessing: image conversions and equality with the official pipeline (RGB, plain resize, [0, 1])."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from rtdetr_deploy.metadata import Preprocessing
from rtdetr_deploy.runtime.preprocess import preprocess, to_bgr8


def _reference(image_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The official deploy preprocessing written plainly: RGB, cv2 linear resize to (W, H), /255, CHW."""
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    resized = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return resized.astype(np.float32).transpose(2, 0, 1) / 255.0


def test_matches_official_preprocessing_on_real_images(real_images: list[np.ndarray]) -> None:
    tensor, sizes = preprocess(real_images, input_size=(320, 384), preprocessing=Preprocessing())
    assert tensor.shape == (len(real_images), 3, 320, 384) and tensor.dtype == np.float32
    assert tensor.flags.c_contiguous
    for i, image in enumerate(real_images):
        np.testing.assert_allclose(tensor[i], _reference(image, (320, 384)), rtol=0, atol=1e-6)
        assert tuple(sizes[i]) == (image.shape[1], image.shape[0])
    assert sizes.dtype == np.int64
    assert 0.0 <= tensor.min() and tensor.max() <= 1.0


def test_bgr_order_and_mean_std() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 0] = 255  # blue
    mean, std = (0.5, 0.25, 0.125), (0.5, 0.5, 0.5)
    rgb, _ = preprocess([image], input_size=(32, 32), preprocessing=Preprocessing(mean=mean, std=std))
    np.testing.assert_allclose(rgb[0, :, 0, 0], [(0 - 0.5) / 0.5, (0 - 0.25) / 0.5, (1 - 0.125) / 0.5], atol=1e-6)
    bgr, _ = preprocess([image], input_size=(32, 32), preprocessing=Preprocessing(color="bgr"))
    np.testing.assert_allclose(bgr[0, :, 0, 0], [1.0, 0.0, 0.0])


def test_grayscale_rgba_and_16bit_are_converted() -> None:
    gray = np.full((5, 7), 100, np.uint8)
    assert to_bgr8(gray).shape == (5, 7, 3) and (to_bgr8(gray) == 100).all()
    assert to_bgr8(gray[..., None]).shape == (5, 7, 3)
    bgra = np.dstack([np.full((5, 7, 3), 30, np.uint8), np.zeros((5, 7), np.uint8)])
    assert to_bgr8(bgra).shape == (5, 7, 3) and (to_bgr8(bgra) == 30).all()
    deep = np.full((5, 7, 3), 0xABCD, np.uint16)
    out = to_bgr8(deep)
    assert out.dtype == np.uint8 and (out == 0xAB).all()
    bgr = np.zeros((5, 7, 3), np.uint8)
    assert to_bgr8(bgr) is bgr


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((0, 5, 3), np.uint8), "H, W > 0"),
        (np.zeros((4, 4, 2), np.uint8), "1, 3 or 4 channels"),
        (np.zeros((4, 4, 3), np.float32), "uint8 or uint16"),
        (np.zeros((2, 4, 4, 3), np.uint8), "shape"),
        ([[1, 2], [3, 4]], "numpy array"),
    ],
)
def test_bad_images_raise_value_error(image: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_bgr8(image)


def test_empty_batch_is_rejected() -> None:
    with pytest.raises(ValueError, match="no images"):
        preprocess([], input_size=(32, 32), preprocessing=Preprocessing())
