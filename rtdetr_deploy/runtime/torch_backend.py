"""PyTorch backend: a checkpoint (or an ``RTDETR`` module) run eagerly, FP16 autocast on CUDA by default.

On CUDA the network can also run in FP32, and its forward pass plus post-processing can be captured once per batch
size as a CUDA graph and replayed, which removes the per-kernel launch cost that dominates small batches.
Needs the ``torch`` extra; torch is imported only when this backend is opened, so the runtime stays torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import numpy as np

from ..errors import BackendError
from ..metadata import ModelMetadata
from .config import parse_device
from .tensors import TensorSpec

__all__ = ["TorchBackend", "TORCH_PRECISIONS"]

DEFAULT_TOPK = 300
MAX_BATCH = 256
TORCH_PRECISIONS = ("fp32", "fp16")
# Forward passes run on a side stream before capture, so that lazy initialisation (cuBLAS/cuDNN handles,
# autotuning) happens outside the graph.
_CAPTURE_WARMUP = 3


def _import_torch() -> ModuleType:
    try:
        import torch
    except ImportError:
        raise BackendError("the torch backend needs PyTorch: pip install 'rtdetr-deploy[torch]'") from None
    return torch


@dataclass
class _CapturedGraph:
    """One CUDA graph of forward + post-processing for one batch size, with the static tensors it reads and writes."""

    graph: Any
    images: Any
    sizes: Any
    outputs: tuple[Any, Any, Any]


def _check_options(kind: str, precision: str | None, cuda_graph: bool) -> str:
    """The precision to run (``None``: FP16 on CUDA, FP32 on CPU); raises ``ValueError`` for CPU-only misuse."""
    if precision is None:
        precision = "fp16" if kind == "cuda" else "fp32"
    if precision not in TORCH_PRECISIONS:
        raise ValueError(f"unknown torch precision {precision!r}; choose from {', '.join(TORCH_PRECISIONS)}")
    if kind != "cuda" and precision == "fp16":
        raise ValueError("the torch backend runs FP16 on CUDA only; use fp32 on the CPU")
    if kind != "cuda" and cuda_graph:
        raise ValueError("CUDA graphs need a CUDA device; pass --device cuda:N")
    return precision


class TorchBackend:
    """Runs an RT-DETRv2 ``nn.Module`` with the exported graph's I/O (``labels``, ``boxes``, ``scores``).

    In FP16 (the CUDA default) the network runs under autocast and the NMS-free post-processing in FP32, so
    pixel boxes keep full precision. With ``cuda_graph`` the first call of each batch size captures the forward
    pass and post-processing as a CUDA graph; later calls copy the inputs into its static tensors and replay it.
    """

    def __init__(
        self,
        model: Any,
        *,
        metadata: ModelMetadata,
        device: str,
        torch: ModuleType,
        cuda_graph: bool = False,
    ) -> None:
        self._torch = torch
        self._model = model
        self.metadata = metadata
        self.device = device
        self._autocast = metadata.precision == "fp16"
        self.cuda_graph = cuda_graph
        self._graphs: dict[int, _CapturedGraph] = {}
        height, width = metadata.input_size
        self.input_specs: tuple[TensorSpec, ...] = (
            TensorSpec("images", (None, 3, height, width), np.dtype(np.float32)),
            TensorSpec("orig_target_sizes", (None, 2), np.dtype(np.int64)),
        )
        k = metadata.topk
        self.output_specs: tuple[TensorSpec, ...] = (
            TensorSpec("labels", (None, k), np.dtype(np.int64)),
            TensorSpec("boxes", (None, k, 4), np.dtype(np.float32)),
            TensorSpec("scores", (None, k), np.dtype(np.float32)),
        )
        precision = "fp16 autocast" if self._autocast else "fp32"
        graph = ", CUDA graph" if cuda_graph else ""
        self.description = f"torch {torch.__version__} ({device}, {precision}{graph})"

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str | None = None,
        precision: str | None = None,
        cuda_graph: bool = False,
    ) -> TorchBackend:
        """Load a checkpoint with ``rtdetr_deploy.load_model`` and fuse it for inference.

        Args:
            path: checkpoint file.
            device: ``"cpu"`` (default) or ``"cuda:N"``.
            precision: ``"fp32"`` or ``"fp16"`` (autocast, CUDA only); ``None`` for FP16 on CUDA, FP32 on CPU.
            cuda_graph: capture and replay CUDA graphs (CUDA only).

        Raises:
            FileNotFoundError, CheckpointError (not RT-DETRv2 weights), BackendError (no torch, no CUDA),
            ValueError (FP16 or CUDA graphs on the CPU, unknown precision).
        """
        _import_torch()
        _check_options(parse_device(device or "cpu")[0], precision, cuda_graph)
        from ..models.checkpoint import load_model

        model = load_model(Path(path))
        model.deploy()
        return cls.from_module(model, device=device, precision=precision, cuda_graph=cuda_graph)

    @classmethod
    def from_module(
        cls,
        model: Any,
        *,
        device: str | None = None,
        topk: int = DEFAULT_TOPK,
        precision: str | None = None,
        cuda_graph: bool = False,
    ) -> TorchBackend:
        """Wrap an ``RTDETR`` module (put in eval mode and moved to ``device``; weights are not changed).

        Class names, category ids and input size come from ``model.info`` when it has one (``load_model`` sets
        it), else contiguous indices and the preset's eval size. ``precision`` and ``cuda_graph`` as in
        ``from_path``.
        """
        torch = _import_torch()
        kind, index = parse_device(device or "cpu")
        precision = _check_options(kind, precision, cuda_graph)
        if kind == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"device cuda:{index} requested but torch sees no CUDA device; pass --device cpu")
        torch_device = f"cuda:{index}" if kind == "cuda" else "cpu"
        config = model.config
        info = getattr(model, "info", None)
        num_classes = model.num_classes
        metadata = ModelMetadata(
            preset=config.name,
            input_size=tuple(info.input_size if info else config.eval_size),
            class_names=tuple(info.class_names if info else (str(i) for i in range(num_classes))),
            category_ids=tuple(info.category_ids if info else range(num_classes)),
            sampling=model.sampling,
            topk=min(topk, config.num_queries * num_classes),
            precision=precision,
            batch=(1, 1, MAX_BATCH),
        )
        model = model.eval().to(torch_device)
        return cls(model, metadata=metadata, device=torch_device, torch=torch, cuda_graph=cuda_graph)

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``images [B, 3, H, W]`` float32 and ``orig_target_sizes [B, 2]`` to ``labels``, ``boxes``, ``scores``."""
        torch = self._torch
        if self._model is None:
            raise BackendError("the torch backend is closed")
        images = torch.from_numpy(np.ascontiguousarray(feed["images"])).to(self.device)
        sizes = torch.from_numpy(np.ascontiguousarray(feed["orig_target_sizes"])).to(self.device)
        if self.cuda_graph:
            labels, boxes, scores = self._replay(images, sizes)
        else:
            with torch.inference_mode():
                labels, boxes, scores = self._forward(images, sizes)
        return {
            "labels": labels.cpu().numpy(),
            "boxes": boxes.cpu().numpy().astype(np.float32, copy=False),
            "scores": scores.cpu().numpy().astype(np.float32, copy=False),
        }

    def _forward(self, images: Any, sizes: Any, *, cache_casts: bool = True) -> tuple[Any, Any, Any]:
        """Network (under autocast in FP16) then top-k post-processing in FP32, on device tensors."""
        from ..models.postprocess import postprocess

        torch = self._torch
        with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=self._autocast, cache_enabled=cache_casts):
            outputs = self._model(images)
        return postprocess(
            outputs["pred_logits"].float(), outputs["pred_boxes"].float(), sizes, topk=self.metadata.topk
        )

    def _replay(self, images: Any, sizes: Any) -> tuple[Any, Any, Any]:
        """Copy the inputs into the batch size's captured graph (capturing it on first use) and replay it."""
        captured = self._graphs.get(int(images.shape[0]))
        if captured is None:
            captured = self._capture(images, sizes)
            self._graphs[int(images.shape[0])] = captured
        captured.images.copy_(images)
        captured.sizes.copy_(sizes)
        captured.graph.replay()
        return captured.outputs

    def _capture(self, images: Any, sizes: Any) -> _CapturedGraph:
        """Capture forward + post-processing for this batch size (autocast's weight-cast cache must be off)."""
        torch = self._torch
        static_images, static_sizes = images.clone(), sizes.clone()
        side = torch.cuda.Stream(device=self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.no_grad(), torch.cuda.stream(side):
            for _ in range(_CAPTURE_WARMUP):
                self._forward(static_images, static_sizes, cache_casts=False)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph):
            outputs = self._forward(static_images, static_sizes, cache_casts=False)
        return _CapturedGraph(graph=graph, images=static_images, sizes=static_sizes, outputs=outputs)

    def close(self) -> None:
        """Drop the model and its captured graphs (and their GPU memory)."""
        self._graphs.clear()
        self._model = None

    def __enter__(self) -> TorchBackend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
