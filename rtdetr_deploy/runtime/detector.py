"""``Detector``: images in, ``Detections`` out, on any backend, configured only by the model's own metadata."""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, overload

import numpy as np

from ..coco.names import ClassNames
from ..contract import FUSED_INPUT_NAME, INPUT_NAMES, OUTPUT_NAMES, RAW_OUTPUT_NAMES
from ..errors import ModelFileError
from ..metadata import ModelMetadata
from .backend import Backend
from .config import RuntimeConfig, check_conf, parse_device
from .detections import Detections
from .postprocess import select_detections, topk_detections
from .preprocess import preprocess, stack_frames
from .registry import check_backend_name, open_backend

__all__ = ["Detector", "PreparedBatch"]

KNOWN_INPUTS = (*INPUT_NAMES, FUSED_INPUT_NAME)


@dataclass(frozen=True)
class PreparedBatch:
    """Backend inputs for ``count`` images, padded up to a fixed batch size when the model has one.

    Attributes:
        feed: input name to array, in the dtypes the backend declares: ``images [B, 3, H, W]`` (and
            ``orig_target_sizes``), or for a fused-preprocessing model ``frames [B, H, W, 3]`` uint8 BGR.
        orig_sizes: ``[B, 2]`` int64 original ``(width, height)`` (padded rows included).
        count: real images in the batch (the first ``count`` rows).
    """

    feed: dict[str, np.ndarray]
    orig_sizes: np.ndarray
    count: int


class Detector:
    """NMS-free RT-DETRv2 detector on ONNX Runtime, TensorRT or PyTorch.

    ``detector(image)`` takes a BGR uint8 ``[H, W, 3]`` array (grayscale, BGRA and 16-bit are converted) and
    returns its ``Detections``; ``detector([img, ...])`` returns one per image, batched up to the model's maximum.
    Input size, preprocessing, class names, category ids and top-k all come from the model file's metadata. A model
    exported with ``--fuse-preprocess`` gets the frames themselves (``frames [B, H, W, 3]`` uint8 BGR); as frames of
    different sizes cannot share its batch, ``detect`` batches consecutive frames of one size (``batch_key``).

    Args:
        model: ``.onnx``, ``.engine`` or ``.pth`` path, an open ``Backend``, or an ``RTDETR`` torch module.
        backend: ``"auto"`` (by suffix), ``"onnxruntime"``, ``"tensorrt"`` or ``"torch"``.
        device: ``"cpu"`` or ``"cuda:N"``; ``None`` for the backend's default (TensorRT ``cuda:0``, others ``cpu``).
        conf: keep detections scoring at least this, in [0, 1].
        classes: keep only these classes, by name or contiguous class index; ``None`` keeps all.
        names: class names and original category ids replacing a checkpoint's (``--names``; the torch backend
            only: an exported model keeps the names it was exported with); their count must be the model's.

    Raises:
        FileNotFoundError, ValueError (bad argument or unknown class), BackendError (the backend refuses the
        model or the device, or the model's I/O is not RT-DETR's).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | Backend | Any,
        *,
        backend: str = "auto",
        device: str | None = None,
        conf: float = 0.25,
        classes: Sequence[str | int] | None = None,
        names: ClassNames | None = None,
    ) -> None:
        self.conf = check_conf(conf)
        check_backend_name(backend)
        if device is not None:
            parse_device(device)
        self.backend: Backend = _open(model, backend=backend, device=device)
        try:
            if names is not None:
                _rename(self.backend, names, model)
            self._check_io()
            self.keep_classes = None if classes is None else _class_indices(classes, self.metadata.class_names)
        except BaseException:
            self.backend.close()
            raise

    @classmethod
    def from_config(cls, config: RuntimeConfig) -> Detector:
        """A detector for ``config.model`` with the config's backend, device, threshold and classes."""
        if config.model is None:
            raise ValueError("no model given: pass --model PATH (.onnx, .engine or .pth)")
        return cls(
            config.model,
            backend=config.backend,
            device=config.device,
            conf=config.conf,
            classes=config.classes,
            names=config.names,
        )

    @property
    def metadata(self) -> ModelMetadata:
        return self.backend.metadata

    @property
    def max_batch(self) -> int:
        """Most images one backend call takes (a fixed-batch model always gets exactly this many)."""
        fixed = self._specs[self._pixels].fixed_batch
        return fixed if fixed is not None else self.metadata.batch[2]

    @property
    def fused(self) -> bool:
        """The model preprocesses in its graph: it takes ``frames [B, H, W, 3]`` uint8 BGR of any size."""
        return self._pixels == "frames"

    def batch_key(self, image: np.ndarray) -> tuple[int, int] | None:
        """Images may share a batch when their keys are equal: ``None`` for any image, ``(H, W)`` for a fused model."""
        return (int(image.shape[0]), int(image.shape[1])) if self.fused else None

    def _check_io(self) -> None:
        self._specs = {spec.name: spec for spec in self.backend.input_specs}
        unknown = [name for name in self._specs if name not in KNOWN_INPUTS]
        self._pixels = "frames" if self.metadata.preprocessing.fused else "images"
        if self._pixels not in self._specs or unknown or {"images", "frames"} <= set(self._specs):
            expected = "frames" if self.metadata.preprocessing.fused else "images[, orig_target_sizes]"
            raise ModelFileError(
                f"model inputs {sorted(self._specs)} are not RT-DETR's; its metadata asks for {expected}"
            )
        outputs = {spec.name for spec in self.backend.output_specs}
        if set(OUTPUT_NAMES) <= outputs:
            self._raw = False
        elif set(RAW_OUTPUT_NAMES) <= outputs:
            self._raw = True
        else:
            raise ModelFileError(
                f"model outputs {sorted(outputs)} are not RT-DETR's; expected {', '.join(OUTPUT_NAMES)} "
                f"or {', '.join(RAW_OUTPUT_NAMES)}"
            )
        if self.fused:
            spec = self._specs["frames"]
            if len(spec.shape) != 4 or spec.shape[3] != 3 or spec.dtype != np.uint8:
                raise ModelFileError(
                    f"fused model input frames{list(spec.shape)} {spec.dtype} is not [N, H, W, 3] uint8"
                )
            return
        height, width = self.metadata.input_size
        declared = self._specs["images"].shape[2:]
        if any(d is not None and d != s for d, s in zip(declared, (height, width), strict=False)):
            raise ModelFileError(
                f"model input images{list(declared)} contradicts its metadata input size {height}x{width}"
            )

    def preprocess(self, images: Sequence[np.ndarray]) -> PreparedBatch:
        """Images to backend inputs (at most ``max_batch`` images), padded to a fixed batch size if needed.

        Raises:
            ValueError: too many images, or (fused model) images of different sizes.
        """
        if len(images) > self.max_batch:
            raise ValueError(f"{len(images)} images exceed the model's batch limit {self.max_batch}")
        if self.fused:
            tensor, orig_sizes = stack_frames(images)
        else:
            tensor, orig_sizes = preprocess(
                images, input_size=self.metadata.input_size, preprocessing=self.metadata.preprocessing
            )
        count = len(images)
        fixed = self._specs[self._pixels].fixed_batch
        if fixed is not None and fixed > count:
            pad = fixed - count
            tensor = np.concatenate([tensor, np.repeat(tensor[-1:], pad, axis=0)])
            orig_sizes = np.concatenate([orig_sizes, np.repeat(orig_sizes[-1:], pad, axis=0)])
        feed = {self._pixels: tensor.astype(self._specs[self._pixels].dtype, copy=False)}
        if "orig_target_sizes" in self._specs:
            feed["orig_target_sizes"] = orig_sizes.astype(self._specs["orig_target_sizes"].dtype)
        return PreparedBatch(feed=feed, orig_sizes=orig_sizes, count=count)

    def infer(self, batch: PreparedBatch) -> dict[str, np.ndarray]:
        """Run the backend on a prepared batch."""
        return self.backend.infer(batch.feed)

    def postprocess(self, outputs: Mapping[str, np.ndarray], batch: PreparedBatch) -> list[Detections]:
        """Backend outputs to one ``Detections`` per real image of the batch (top-k in numpy for raw graphs)."""
        if self._raw:
            labels, boxes, scores = topk_detections(
                outputs["pred_logits"], outputs["pred_boxes"], batch.orig_sizes, topk=self.metadata.topk
            )
        else:
            labels, boxes, scores = (outputs[name] for name in OUTPUT_NAMES)
        n = batch.count
        return select_detections(
            labels[:n],
            boxes[:n],
            scores[:n],
            conf=self.conf,
            class_names=self.metadata.class_names,
            category_ids=self.metadata.category_ids,
            keep_classes=self.keep_classes,
        )

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """One ``Detections`` per image, in order, in batches of at most ``max_batch`` images of equal ``batch_key``."""
        results: list[Detections] = []
        start = 0
        while start < len(images):
            key, stop = self.batch_key(images[start]), start + 1
            while stop < min(len(images), start + self.max_batch) and self.batch_key(images[stop]) == key:
                stop += 1
            batch = self.preprocess(images[start:stop])
            results.extend(self.postprocess(self.infer(batch), batch))
            start = stop
        return results

    @overload
    def __call__(self, images: np.ndarray) -> Detections: ...

    @overload
    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]: ...

    def __call__(self, images: np.ndarray | Sequence[np.ndarray]) -> Detections | list[Detections]:
        if isinstance(images, np.ndarray):
            return self.detect([images])[0]
        return self.detect(list(images))

    def close(self) -> None:
        """Release the backend."""
        self.backend.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _open(model: Any, *, backend: str, device: str | None) -> Backend:
    if isinstance(model, str | os.PathLike):
        return open_backend(model, backend=backend, device=device)
    if isinstance(model, Backend):
        return model
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        if backend not in ("auto", "torch"):
            raise ValueError(f"a torch module runs on the torch backend, not {backend!r}")
        from .torch_backend import TorchBackend

        return TorchBackend.from_module(model, device=device)
    raise ValueError(f"model must be a file path, a Backend or a torch module, got {type(model).__name__}")


def _rename(backend: Backend, names: ClassNames, model: Any) -> None:
    """Give a checkpoint's backend ``names``; refuse an exported model (its names are part of the file)."""
    where = str(model) if isinstance(model, str | os.PathLike) else "in memory"
    if backend.name != "torch":
        raise ValueError(
            f"--names applies to checkpoints (.pth, .safetensors, model folders); the exported model {where} keeps "
            "the names it was exported with (export it again with --names)"
        )
    names.check_count(backend.metadata.num_classes, where)
    backend.metadata = dataclasses.replace(backend.metadata, class_names=names.names, category_ids=names.category_ids)


def _class_indices(classes: Sequence[str | int], names: Sequence[str]) -> np.ndarray:
    """Contiguous indices of ``classes`` given by name or index (``"3"`` is an index unless a class is named "3")."""
    indices = []
    for item in classes:
        key = str(item).strip()
        if key in names:
            indices.append(list(names).index(key))
        elif key.lstrip("-").isdigit() and 0 <= int(key) < len(names):
            indices.append(int(key))
        else:
            hint = difflib.get_close_matches(key, names, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
            raise ValueError(f"unknown class {key!r}{suggestion}; give names ({shown}) or indices 0..{len(names) - 1}")
    return np.asarray(sorted(set(indices)), dtype=np.int64)
