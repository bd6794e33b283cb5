"""RT-DETRv2's query selection on the host, in numpy: for engines that run the model as two graphs around it.

The model keeps the ``Q`` memory positions with the best class logit and starts its decoder from their rows of the
encoder's output memory (the content queries) and their anchors. Engines without TopK and GatherElements layers
(ncnn) run the encoder graph up to the per-position scores, select here, and run the decoder graph on the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SelectedQueries", "select_queries"]


@dataclass(frozen=True)
class SelectedQueries:
    """The queries of one image.

    Attributes:
        index: ``[Q]`` int64 memory positions, best score first.
        content: ``[1, Q, D]`` float32 rows of the output memory at ``index``.
        anchors: ``[1, Q, 4]`` float32 inverse-sigmoid cxcywh anchors at ``index`` (``inf`` where invalid).
    """

    index: np.ndarray
    content: np.ndarray
    anchors: np.ndarray


def select_queries(scores: np.ndarray, output_memory: np.ndarray, anchors: np.ndarray, *, k: int) -> SelectedQueries:
    """The ``k`` best positions of one image and their content and anchors.

    Args:
        scores: ``[L]`` best class logit of each memory position.
        output_memory: ``[L, D]`` the encoder's output memory (masked where the anchor is invalid).
        anchors: ``[L, 4]`` the model's inverse-sigmoid anchors.
        k: queries to keep, at most ``L``.

    Returns:
        The positions in descending score order (equal scores by position, as a stable sort), with their rows.

    Raises:
        ValueError: shapes that disagree on ``L``, or ``k`` outside ``1..L``.
    """
    positions = scores.shape[0]
    if scores.ndim != 1 or output_memory.shape[0] != positions or anchors.shape != (positions, 4):
        raise ValueError(
            f"scores [L], output_memory [L, D] and anchors [L, 4] must agree on L, got {scores.shape}, "
            f"{output_memory.shape}, {anchors.shape}"
        )
    if not 1 <= k <= positions:
        raise ValueError(f"k must lie in 1..{positions} (the memory positions), got {k}")
    index = np.argsort(-scores.astype(np.float32, copy=False), kind="stable")[:k].astype(np.int64)
    content = np.ascontiguousarray(output_memory[index], dtype=np.float32)[None]
    picked = np.ascontiguousarray(anchors[index], dtype=np.float32)[None]
    return SelectedQueries(index=index, content=content, anchors=picked)
