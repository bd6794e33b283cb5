"""ncnn backend: a ``.ncnn`` folder written by ``rtdetr-export --ncnn``, on the CPU in FP32.

ncnn has no TopK or GatherElements layer, so the model is shipped as two graphs around its query selection
(``NCNN_FILES``): the encoder graph (``images`` -> ``memory [L, D]``, ``output_memory [L, D]``, ``scores [L]``),
the host's selection in numpy (``query_selection``) with the model's anchors (``anchors.npy``, ``[L, 4]``), and the
decoder graph (``content [Q, D]``, ``anchors [Q, 4]``, ``memory [L, D]`` -> ``pred_logits [Q, C]``,
``pred_boxes [Q, 4]`` cxcywh). The raw outputs get the host's top-k (``postprocess.topk_detections``), so ``infer``
returns the official deploy outputs. ncnn's blobs carry pnnx's names (``in0, in1, ...``, ``out0, out1, ...`` in
the order above) and no batch axis: a batch is run one image at a time.

Threads: ncnn's own default (its count of physical big cores), as the other CPU backends use every core; pass
``threads`` to ``from_path`` to choose. Its reduced-precision paths (FP16/BF16 storage and arithmetic, which it
turns on by default where the CPU has them) are switched off: the engine is verified as FP32. ``ncnn`` (pip
``ncnn``) is imported only when a model is opened.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import BackendError, ModelFileError
from ..metadata import ModelMetadata
from .postprocess import topk_detections
from .query_selection import select_queries
from .sidecar_backend import SidecarEngineBackend

__all__ = ["ANCHORS_FILE", "NCNN_FILES", "NcnnBackend", "ncnn_graph_files"]

logger = logging.getLogger(__name__)

ANCHORS_FILE = "anchors.npy"
GRAPHS = ("encoder", "decoder")
# Every file of a ``.ncnn`` folder but its sidecar (``engine_sidecar.FOLDER_SIDECAR``).
NCNN_FILES = (*(f"{graph}.ncnn.{part}" for graph in GRAPHS for part in ("param", "bin")), ANCHORS_FILE)


def ncnn_graph_files(folder: Path, graph: str) -> tuple[Path, Path]:
    """``folder/<graph>.ncnn.param`` and ``.bin`` of ``graph`` (``encoder`` or ``decoder``)."""
    return folder / f"{graph}.ncnn.param", folder / f"{graph}.ncnn.bin"


def _import_ncnn() -> ModuleType:
    try:
        import ncnn
    except ImportError:
        raise BackendError("the ncnn backend needs ncnn: pip install 'rtdetr-deploy[ncnn]'") from None
    return ncnn


def _load_net(ncnn: ModuleType, folder: Path, graph: str, threads: int) -> Any:
    net = ncnn.Net()
    if threads:
        net.opt.num_threads = threads
    net.opt.use_vulkan_compute = False
    for option in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage"):
        setattr(net.opt, option, False)
    param, weights = ncnn_graph_files(folder, graph)
    if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
        raise ModelFileError(f"{folder}: ncnn cannot load {param.name} / {weights.name}")
    return net


class NcnnBackend(SidecarEngineBackend):
    """Runs a ``.ncnn`` folder exported by ``rtdetr-export --ncnn``: encoder graph, host query selection, decoder
    graph, host top-k (see the module docstring).

    Build it with ``NcnnBackend.from_path``. ``infer`` takes and returns numpy arrays keyed by tensor name.
    """

    name = "ncnn"
    suffix = ".ncnn"

    def __init__(
        self, ncnn: ModuleType, nets: tuple[Any, Any], anchors: np.ndarray, *, metadata: ModelMetadata, path: Path
    ) -> None:
        super().__init__(metadata=metadata, path=path)
        self._ncnn = ncnn
        self._nets: tuple[Any, Any] | None = nets
        self._anchors = anchors
        self._queries = int(metadata.queries or 0)
        self._classes = len(metadata.class_names)
        self.description = f"ncnn {ncnn.__version__} (CPU, fp32; encoder + host query selection + decoder)"

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], *, device: str | None = None, threads: int = 0) -> NcnnBackend:
        """Open the folder ``path`` (its ``model.json`` sidecar inside) on the CPU.

        Args:
            path: the ``.ncnn`` folder.
            device: ``"cpu"`` or None.
            threads: ncnn's thread count (0: ncnn's default, its physical big cores).

        Raises:
            FileNotFoundError: no such folder, no sidecar, or a graph or the anchors missing (named).
            ValueError: a device other than the CPU, a negative thread count, a sidecar of another engine.
            ModelFileError: the sidecar lacks the query count, anchors of the wrong shape, graphs ncnn cannot load.
            BackendError: the ncnn package is missing.
        """
        cls._check_device(device)
        if threads < 0:
            raise ValueError(f"threads must be 0 (ncnn's default) or positive, got {threads}")
        path, metadata, _ = cls._read_sidecar(path)
        missing = [name for name in NCNN_FILES if not (path / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{path} lacks {', '.join(missing)} (rtdetr-export --ncnn writes them)")
        anchors = np.load(path / ANCHORS_FILE)
        if anchors.ndim != 2 or anchors.shape[1] != 4 or not metadata.queries:
            raise ModelFileError(
                f"{path}: expected anchors [L, 4] and the query count in the sidecar, got anchors {anchors.shape} "
                f"and queries {metadata.queries}"
            )
        ncnn = _import_ncnn()
        nets = (_load_net(ncnn, path, "encoder", threads), _load_net(ncnn, path, "decoder", threads))
        backend = cls(ncnn, nets, anchors.astype(np.float32), metadata=metadata, path=path)
        logger.info("ncnn: %s", backend.description)
        return backend

    def _run(self, net: Any, arrays: Sequence[np.ndarray], count: int) -> list[np.ndarray]:
        """``net`` on ``arrays`` (blobs ``in0...``, no batch axis); its ``count`` outputs ``out0...`` as arrays."""
        with net.create_extractor() as extractor:
            for i, array in enumerate(arrays):
                extractor.input(f"in{i}", self._ncnn.Mat(np.ascontiguousarray(array, dtype=np.float32)))
            outputs = []
            for i in range(count):
                status, mat = extractor.extract(f"out{i}")
                if status != 0:
                    raise BackendError(f"{self.path}: ncnn failed to compute out{i} (status {status})")
                outputs.append(np.array(mat, dtype=np.float32, copy=True))
        return outputs

    def _raw(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``pred_logits [Q, C]`` and ``pred_boxes [Q, 4]`` of one ``[3, H, W]`` image."""
        encoder, decoder = self._nets  # type: ignore[misc] - checked open by _checked_feed
        positions = self._anchors.shape[0]
        memory, output_memory, scores = self._run(encoder, [image], 3)
        memory, output_memory = memory.reshape(positions, -1), output_memory.reshape(positions, -1)
        selected = select_queries(scores.reshape(positions), output_memory, self._anchors, k=self._queries)
        logits, boxes = self._run(decoder, [selected.content[0], selected.anchors[0], memory], 2)
        return logits.reshape(self._queries, self._classes), boxes.reshape(self._queries, 4)

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model.

        Args:
            feed: ``images [B, 3, H, W]`` float32 and ``orig_target_sizes [B, 2]`` (width, height), B the batch
                the model was exported for.

        Returns:
            ``labels [B, K]`` int64, ``boxes [B, K, 4]`` float32 xyxy pixels, ``scores [B, K]`` float32.
        """
        (_, images), (_, sizes_wh) = self._checked_feed(feed, self._nets)
        raw = [self._raw(image) for image in images]
        logits, boxes = np.stack([r[0] for r in raw]), np.stack([r[1] for r in raw])
        labels, boxes_xyxy, scores = topk_detections(logits, boxes, sizes_wh, topk=self.metadata.topk)
        outputs = {"labels": labels, "boxes": boxes_xyxy, "scores": scores}
        return {spec.name: outputs[spec.name].astype(spec.dtype) for spec in self.output_specs}

    def close(self) -> None:
        """Release both ncnn nets."""
        if self._nets is not None:
            for net in self._nets:
                net.clear()
        self._nets = None
