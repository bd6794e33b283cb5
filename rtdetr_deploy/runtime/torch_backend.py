"""PyTorch backend: a checkpoint (or an ``RTDETR`` module) run eagerly, FP16 autocast on CUDA by default.

On CUDA the network can also run in FP32, and the whole inference step can be captured once per batch size as a
CUDA graph and replayed: the copy of the inputs from pinned host memory, the forward pass, the post-processing and
the copy of the outputs back to pinned host memory. That removes the per-kernel launch cost that dominates small
batches and every per-call allocation and pageable copy.

``compile_mode`` (opt-in) runs the network through ``torch.compile`` (inductor) in one of ``COMPILE_MODES``; the
first call of each batch size compiles, and its duration is kept in ``compile_seconds``. Whether a mode beats the
CUDA-graph replay is measured by ``benchmarks/gpu_pipeline.py``; until then it stays off by default. The modes
that replay CUDA graphs of their own (``reduce-overhead``, ``max-autotune``) cannot be combined with ``cuda_graph``.

Needs the ``torch`` extra; torch is imported only when this backend is opened, so the runtime stays torch-free.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..contract import OUTPUT_NAMES
from ..errors import BackendError
from ..metadata import ModelMetadata
from .backend import BackendBase
from .config import parse_device
from .tensors import TensorSpec

__all__ = ["COMPILE_MODES", "TorchBackend", "TORCH_PRECISIONS"]

DEFAULT_TOPK = 300
MAX_BATCH = 256
TORCH_PRECISIONS = ("fp32", "fp16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# torch.compile modes that capture and replay CUDA graphs themselves (CUDA graph trees).
_SELF_GRAPHED = ("reduce-overhead", "max-autotune")
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
    """One CUDA graph of the whole inference step for one batch size.

    Attributes:
        graph: the ``torch.cuda.CUDAGraph``.
        host_images: ``[B, 3, H, W]`` float32 numpy view of the pinned buffer the graph copies to the device.
        host_sizes: ``[B, 2]`` int64 numpy view of the pinned ``orig_target_sizes`` buffer.
        host_outputs: numpy views of the pinned buffers the graph copies ``labels``/``boxes``/``scores`` into.
        tensors: every tensor the graph reads or writes (kept alive as long as the graph).
    """

    graph: Any
    host_images: np.ndarray
    host_sizes: np.ndarray
    host_outputs: dict[str, np.ndarray]
    tensors: tuple[Any, ...]


def _check_options(kind: str, precision: str | None, cuda_graph: bool, compile_mode: str | None = None) -> str:
    """The precision to run (``None``: FP16 on CUDA, FP32 on CPU); raises ``ValueError`` for CPU-only misuse, an
    unknown ``torch.compile`` mode, or one that replays CUDA graphs of its own combined with ``cuda_graph``."""
    if precision is None:
        precision = "fp16" if kind == "cuda" else "fp32"
    if precision not in TORCH_PRECISIONS:
        raise ValueError(f"unknown torch precision {precision!r}; choose from {', '.join(TORCH_PRECISIONS)}")
    if kind != "cuda" and precision == "fp16":
        raise ValueError("the torch backend runs FP16 on CUDA only; use fp32 on the CPU")
    if kind != "cuda" and cuda_graph:
        raise ValueError("CUDA graphs need a CUDA device; pass --device cuda:N")
    if compile_mode is not None and compile_mode not in COMPILE_MODES:
        raise ValueError(f"unknown torch.compile mode {compile_mode!r}; choose from {', '.join(COMPILE_MODES)}")
    if cuda_graph and compile_mode in _SELF_GRAPHED:
        raise ValueError(
            f"torch.compile mode {compile_mode!r} replays CUDA graphs of its own; drop cuda_graph or use "
            "'default' or 'max-autotune-no-cudagraphs'"
        )
    return precision


class TorchBackend(BackendBase):
    """Runs an RT-DETRv2 ``nn.Module`` with the exported graph's I/O (``labels``, ``boxes``, ``scores``).

    In FP16 (the CUDA default) the network runs under autocast and the NMS-free post-processing in FP32, so
    pixel boxes keep full precision. With ``cuda_graph`` the first call of each batch size captures the whole step
    (pinned host input to device, forward pass, post-processing, device to pinned host output) as a CUDA graph;
    later calls copy the inputs into its pinned buffers, replay it and copy the outputs out. With
    ``compile_mode`` the network runs compiled by ``torch.compile`` (``compile_seconds``: first call per batch).
    """

    name = "torch"

    def __init__(
        self,
        model: Any,
        *,
        metadata: ModelMetadata,
        device: str,
        torch: ModuleType,
        cuda_graph: bool = False,
        compile_mode: str | None = None,
    ) -> None:
        self._torch = torch
        self._model = model
        self.compile_mode = compile_mode
        self._network = model if compile_mode is None else torch.compile(model, mode=compile_mode, dynamic=False)
        self.compile_seconds: dict[int, float] = {}
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
        compiled = f", torch.compile {compile_mode}" if compile_mode else ""
        self.description = f"torch {torch.__version__} ({device}, {precision}{graph}{compiled})"

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str | None = None,
        precision: str | None = None,
        cuda_graph: bool = False,
        compile_mode: str | None = None,
    ) -> TorchBackend:
        """Load a checkpoint with ``rtdetr_deploy.load_model`` and fuse it for inference.

        Args:
            path: checkpoint file.
            device: ``"cpu"`` (default) or ``"cuda:N"``.
            precision: ``"fp32"`` or ``"fp16"`` (autocast, CUDA only); ``None`` for FP16 on CUDA, FP32 on CPU.
            cuda_graph: capture and replay the whole inference step as CUDA graphs (CUDA only).
            compile_mode: run the network through ``torch.compile`` in this mode (``COMPILE_MODES``); ``None``: eager.

        Raises:
            FileNotFoundError, CheckpointError (not RT-DETRv2 weights), BackendError (no torch, no CUDA),
            ValueError (FP16 or CUDA graphs on the CPU, unknown precision or compile mode, a compile mode that
            replays its own CUDA graphs with ``cuda_graph``).
        """
        _import_torch()
        _check_options(parse_device(device or "cpu")[0], precision, cuda_graph, compile_mode)
        from ..models.checkpoint import load_model

        model = load_model(Path(path))
        model.deploy()
        return cls.from_module(
            model, device=device, precision=precision, cuda_graph=cuda_graph, compile_mode=compile_mode
        )

    @classmethod
    def from_module(
        cls,
        model: Any,
        *,
        device: str | None = None,
        topk: int = DEFAULT_TOPK,
        precision: str | None = None,
        cuda_graph: bool = False,
        compile_mode: str | None = None,
    ) -> TorchBackend:
        """Wrap an ``RTDETR`` module (put in eval mode and moved to ``device``; weights are not changed).

        Class names, category ids and input size come from ``model.info`` when it has one (``load_model`` sets
        it), else contiguous indices and the preset's eval size. ``precision``, ``cuda_graph`` and
        ``compile_mode`` as in ``from_path``.
        """
        torch = _import_torch()
        kind, index = parse_device(device or "cpu")
        precision = _check_options(kind, precision, cuda_graph, compile_mode)
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
        return cls(
            model, metadata=metadata, device=torch_device, torch=torch, cuda_graph=cuda_graph, compile_mode=compile_mode
        )

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``images [B, 3, H, W]`` float32 and ``orig_target_sizes [B, 2]`` to ``labels``, ``boxes``, ``scores``."""
        if self._model is None:
            raise BackendError("the torch backend is closed")
        batch = int(feed["images"].shape[0])
        start = time.perf_counter()
        outputs = self._replay(feed) if self.cuda_graph else self._eager(feed)
        if self.compile_mode is not None and batch not in self.compile_seconds:
            self.compile_seconds[batch] = time.perf_counter() - start
        return outputs

    def _eager(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        images = torch.from_numpy(np.ascontiguousarray(feed["images"])).to(self.device)
        sizes = torch.from_numpy(np.ascontiguousarray(feed["orig_target_sizes"])).to(self.device)
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
            outputs = self._network(images)
        return postprocess(
            outputs["pred_logits"].float(), outputs["pred_boxes"].float(), sizes, topk=self.metadata.topk
        )

    def _replay(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copy the inputs into the batch size's pinned buffers (capturing its graph on first use), replay the whole
        step, wait for it, and return copies of the pinned outputs (the next replay overwrites them)."""
        batch = int(feed["images"].shape[0])
        captured = self._graphs.get(batch)
        if captured is None:
            captured = self._graphs[batch] = self._capture(feed)
        np.copyto(captured.host_images, feed["images"], casting="same_kind")
        np.copyto(captured.host_sizes, feed["orig_target_sizes"], casting="same_kind")
        captured.graph.replay()
        self._torch.cuda.current_stream(self.device).synchronize()
        return {name: array.copy() for name, array in captured.host_outputs.items()}

    def _capture(self, feed: Mapping[str, np.ndarray]) -> _CapturedGraph:
        """Capture host-to-device copies, forward, post-processing and device-to-host copies for this batch size
        (autocast's weight-cast cache must be off; errors are thread-local, so other threads may use CUDA)."""
        torch = self._torch
        host_images = torch.empty(feed["images"].shape, dtype=torch.float32, pin_memory=True)
        host_sizes = torch.empty(feed["orig_target_sizes"].shape, dtype=torch.int64, pin_memory=True)
        np.copyto(host_images.numpy(), feed["images"], casting="same_kind")
        np.copyto(host_sizes.numpy(), feed["orig_target_sizes"], casting="same_kind")
        images = torch.empty(host_images.shape, dtype=torch.float32, device=self.device)
        sizes = torch.empty(host_sizes.shape, dtype=torch.int64, device=self.device)

        def step() -> tuple[Any, Any, Any]:
            images.copy_(host_images, non_blocking=True)
            sizes.copy_(host_sizes, non_blocking=True)
            return self._forward(images, sizes, cache_casts=False)

        side = torch.cuda.Stream(device=self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.no_grad(), torch.cuda.stream(side):
            for _ in range(_CAPTURE_WARMUP):
                warm = step()
        torch.cuda.current_stream(self.device).wait_stream(side)
        host = {
            name: torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            for name, t in zip(OUTPUT_NAMES, warm, strict=True)
        }
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph, capture_error_mode="thread_local"):
            outputs = step()
            for name, tensor in zip(OUTPUT_NAMES, outputs, strict=True):
                host[name].copy_(tensor, non_blocking=True)
        return _CapturedGraph(
            graph=graph,
            host_images=host_images.numpy(),
            host_sizes=host_sizes.numpy(),
            host_outputs={name: tensor.numpy() for name, tensor in host.items()},
            tensors=(host_images, host_sizes, images, sizes, *outputs, *host.values()),
        )

    def close(self) -> None:
        """Drop the model, its compiled form and its captured graphs (and their GPU and pinned memory)."""
        self._graphs.clear()
        self._model = None
        self._network = None
