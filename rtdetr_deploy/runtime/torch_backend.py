"""PyTorch backend: a checkpoint (or an ``RTDETR`` module) run eagerly, FP16 autocast on CUDA.

Needs the ``torch`` extra; torch is imported only when this backend is opened, so the runtime stays torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import numpy as np

from ..errors import BackendError
from ..metadata import ModelMetadata
from .config import parse_device
from .tensors import TensorSpec

__all__ = ["TorchBackend"]

DEFAULT_TOPK = 300
MAX_BATCH = 256


def _import_torch() -> ModuleType:
    try:
        import torch
    except ImportError:
        raise BackendError("the torch backend needs PyTorch: pip install 'rtdetr-deploy[torch]'") from None
    return torch


class TorchBackend:
    """Runs an RT-DETRv2 ``nn.Module`` with the exported graph's I/O (``labels``, ``boxes``, ``scores``).

    On CUDA the network runs under FP16 autocast and the NMS-free post-processing in FP32, so pixel boxes keep
    full precision.
    """

    def __init__(self, model: Any, *, metadata: ModelMetadata, device: str, torch: ModuleType) -> None:
        self._torch = torch
        self._model = model
        self.metadata = metadata
        self.device = device
        self._autocast = device.startswith("cuda")
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
        self.description = f"torch {torch.__version__} ({device}, {precision})"

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], *, device: str | None = None) -> TorchBackend:
        """Load a checkpoint with ``rtdetr_deploy.load_model`` and fuse it for inference.

        Raises:
            FileNotFoundError, CheckpointError (not RT-DETRv2 weights), BackendError (no torch, no CUDA).
        """
        _import_torch()
        from ..models.checkpoint import load_model

        model = load_model(Path(path))
        model.deploy()
        return cls.from_module(model, device=device)

    @classmethod
    def from_module(cls, model: Any, *, device: str | None = None, topk: int = DEFAULT_TOPK) -> TorchBackend:
        """Wrap an ``RTDETR`` module (put in eval mode and moved to ``device``; weights are not changed).

        Class names, category ids and input size come from ``model.info`` when it has one (``load_model`` sets
        it), else contiguous indices and the preset's eval size.
        """
        torch = _import_torch()
        kind, index = parse_device(device or "cpu")
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
            precision="fp16" if kind == "cuda" else "fp32",
            batch=(1, 1, MAX_BATCH),
        )
        model = model.eval().to(torch_device)
        return cls(model, metadata=metadata, device=torch_device, torch=torch)

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``images [B, 3, H, W]`` float32 and ``orig_target_sizes [B, 2]`` to ``labels``, ``boxes``, ``scores``."""
        from ..models.postprocess import postprocess

        torch = self._torch
        if self._model is None:
            raise BackendError("the torch backend is closed")
        with torch.inference_mode():
            images = torch.from_numpy(np.ascontiguousarray(feed["images"])).to(self.device)
            sizes = torch.from_numpy(np.ascontiguousarray(feed["orig_target_sizes"])).to(self.device)
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=self._autocast):
                outputs = self._model(images)
            labels, boxes, scores = postprocess(
                outputs["pred_logits"].float(), outputs["pred_boxes"].float(), sizes, topk=self.metadata.topk
            )
        return {
            "labels": labels.cpu().numpy(),
            "boxes": boxes.cpu().numpy().astype(np.float32, copy=False),
            "scores": scores.cpu().numpy().astype(np.float32, copy=False),
        }

    def close(self) -> None:
        """Drop the model (and its GPU memory)."""
        self._model = None

    def __enter__(self) -> TorchBackend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
