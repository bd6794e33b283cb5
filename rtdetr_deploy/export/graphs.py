"""Running exported graphs in ONNX Runtime (CPU) for verification: the runtime's inputs, batching, probe outputs.

Verification feeds a graph exactly what the runtime would (the preprocessing recorded in its metadata) in
batches the graph accepts, and reads the probe's extra outputs (``onnx_export.Probe``) back as decisions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..runtime.onnxruntime_backend import read_onnx_metadata
from ..runtime.preprocess import preprocess

__all__ = ["decision_pairs", "file_inputs", "run_graph", "run_in_chunks"]


def file_inputs(path: str | os.PathLike[str], images_bgr: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``images [B, 3, H, W]`` and ``orig_target_sizes [B, 2]`` (width, height) as the runtime makes them for the
    ONNX at ``path``: its input size and the preprocessing its metadata records."""
    metadata = read_onnx_metadata(path)
    return preprocess(images_bgr, input_size=metadata.input_size, preprocessing=metadata.preprocessing)


def _session(path: Path):  # noqa: ANN202 - onnxruntime is imported lazily
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_graph(
    path: str | os.PathLike[str],
    pixels: np.ndarray,
    sizes_wh: np.ndarray,
    *,
    batch: tuple[int, int, int],
    outputs: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Run a graph over all images in chunks of the largest batch it accepts (a fixed batch is padded).

    Args:
        path: the ONNX.
        pixels: ``[N, 3, H, W]`` float32 input.
        sizes_wh: ``[N, 2]`` int64 original ``(width, height)``.
        batch: the graph's ``(min, opt, max)`` batch range.
        outputs: the outputs to fetch (every output when None); each must have the batch first.

    Returns:
        Each output, concatenated over the chunks, ``[N, ...]``.
    """
    session = _session(Path(path))
    names = list(outputs) if outputs is not None else [o.name for o in session.get_outputs()]
    inputs = {i.name for i in session.get_inputs()}

    def infer(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # A raw-output graph takes no orig_target_sizes.
        return dict(zip(names, session.run(names, {k: v for k, v in feed.items() if k in inputs}), strict=True))

    return run_in_chunks(infer, names, pixels, sizes_wh, batch=batch)


def run_in_chunks(
    infer: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]],
    names: Sequence[str],
    pixels: np.ndarray,
    sizes_wh: np.ndarray,
    *,
    batch: tuple[int, int, int],
) -> dict[str, np.ndarray]:
    """Feed ``infer`` all images in chunks of the largest batch ``(min, opt, max)`` allows, padding a chunk below
    the minimum with copies of its last image, and concatenate the outputs ``names`` (batch first) over the
    chunks, padding dropped."""
    low, _, high = batch
    chunks = []
    for start in range(0, len(pixels), high):
        images, sizes = pixels[start : start + high], sizes_wh[start : start + high]
        count = len(images)
        pad = max(low - count, 0)
        if pad:
            images = np.concatenate([images, np.repeat(images[-1:], pad, axis=0)])
            sizes = np.concatenate([sizes, np.repeat(sizes[-1:], pad, axis=0)])
        results = infer({"images": images, "orig_target_sizes": sizes})
        chunks.append([results[name][:count] for name in names])
    return {name: np.concatenate(parts) for name, parts in zip(names, zip(*chunks, strict=True), strict=True)}


def decision_pairs(outputs: dict[str, np.ndarray], count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(values, outcome)`` of the ``count`` decisions a probe returned, in order (for ``DecisionLog(replay=)``)."""
    return [(outputs[f"decision.{i}.values"], outputs[f"decision.{i}.outcome"]) for i in range(count)]
