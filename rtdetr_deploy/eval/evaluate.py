"""COCO box metrics of deployed artifacts, measured through the path deployment uses: the runtime's ``Detector``.

Each model runs with its own backend (``.onnx`` of any precision on ONNX Runtime, ``.engine`` on TensorRT,
``.pth`` on PyTorch), the runtime's preprocessing and its NMS-free post-processing with no score threshold, so
that the AP measured here is the AP a deployment of that file gets.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..artifacts import is_checkpoint
from ..coco import ClassNames, CocoSet, coco_box_metrics, find_coco_split, load_coco
from ..metadata import ModelMetadata
from ..runtime.detector import Detector
from ..runtime.sources import read_image

__all__ = ["EvalData", "ModelScore", "check_classes", "evaluate_model", "evaluate_models", "load_eval_data"]


@dataclass(frozen=True)
class EvalData:
    """A labelled split to evaluate on.

    Attributes:
        name: how it was named (a folder, or ``synthetic``).
        split: the split's name (``val`` by default).
        coco: the validated annotations and image paths.
    """

    name: str
    split: str
    coco: CocoSet

    @property
    def num_images(self) -> int:
        return len(self.coco.images)


@dataclass(frozen=True)
class ModelScore:
    """What one model scored.

    Attributes:
        model: the file evaluated.
        backend: the runtime that ran it.
        precision: ``fp32``, ``fp16`` or ``int8`` (the torch backend: its own precision).
        description: the backend's one-line description (version, provider or device).
        metrics: ``AP``, ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl``, ``AR100``.
        per_class: AP per class name.
        latency_ms: median milliseconds per image of ``Detector`` calls (preprocess, inference, postprocess).
    """

    model: Path
    backend: str
    precision: str
    description: str
    metrics: dict[str, float]
    per_class: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0


def load_eval_data(data: str | os.PathLike[str], *, split: str = "val") -> EvalData:
    """The ``split`` of a COCO-format dataset folder (the trainer's layouts), or of the embedded synthetic set.

    Raises:
        FileNotFoundError: no such folder, split or images; ValueError: an invalid or empty annotation file.
    """
    if str(data) == "synthetic":
        from ..data import ensure_synthetic

        paths = ensure_synthetic()
        splits = {
            "train": (paths.train_annotations, paths.train_images),
            "val": (paths.val_annotations, paths.val_images),
        }
        if split not in splits:
            raise ValueError(f"the synthetic set has the splits train and val, not {split!r}")
        annotations, images = splits[split]
    else:
        annotations, images = find_coco_split(Path(data), split)
    return EvalData(name=str(data), split=split, coco=load_coco(annotations, images))


def _describe_classes(names: Sequence[str], ids: Sequence[int]) -> str:
    pairs = [f"{i}:{n}" for i, n in zip(ids, names, strict=True)]
    return "[" + ", ".join(pairs[:8]) + (", ..." if len(pairs) > 8 else "") + f"] ({len(pairs)})"


def check_classes(metadata: ModelMetadata, data: EvalData, model: Path) -> None:
    """Refuse a model whose category ids are not the data's (both sides named)."""
    if sorted(metadata.category_ids) != sorted(data.coco.category_ids):
        ours = _describe_classes(metadata.class_names, metadata.category_ids)
        theirs = _describe_classes(data.coco.class_names, data.coco.category_ids)
        raise ValueError(
            f"{model.name}'s classes {ours} do not match the categories of {data.name} ({data.split}) {theirs}"
        )


def _batches(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def evaluate_model(
    model: str | os.PathLike[str],
    data: EvalData,
    *,
    backend: str = "auto",
    device: str | None = None,
    batch: int = 1,
    progress: bool = True,
    names: ClassNames | None = None,
) -> ModelScore:
    """COCO metrics of one model file on ``data``, through ``Detector`` (no score threshold).

    ``names`` (``--names``) replace a checkpoint's class names and category ids (an exported model keeps its own).

    Raises:
        FileNotFoundError, ValueError (a model that is not a detector, classes that do not match the data, a
        batch the model does not take), BackendError (the backend fails).
    """
    from tqdm import tqdm

    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    with Detector(path, backend=backend, device=device, conf=0.0, names=names) as detector:
        check_classes(detector.metadata, data, path)
        if not 1 <= batch <= detector.max_batch:
            raise ValueError(f"--batch {batch} must lie in 1..{detector.max_batch}, the batch range of {path.name}")
        results, latencies = [], []
        bar = tqdm(total=data.num_images, desc=path.name, unit="image", disable=not progress or None, leave=False)
        for records in _batches(data.coco.images, batch):
            images = []
            for record in records:
                image, reason = read_image(record.path)
                if image is None:
                    raise ValueError(f"cannot read image {record.path}: {reason}")
                images.append(image)
            start = time.perf_counter()
            detections = detector.detect(images)
            latencies.append((time.perf_counter() - start) / len(images))
            for record, found in zip(records, detections, strict=True):
                results += found.to_coco(record.id)
            bar.update(len(records))
        bar.close()
        metrics, per_category = coco_box_metrics(data.coco.coco, results)
        names = dict(zip(data.coco.category_ids, data.coco.class_names, strict=True))
        return ModelScore(
            model=path,
            backend=detector.backend.name,
            precision=detector.metadata.precision,
            description=detector.backend.description,
            metrics=metrics,
            per_class={names[c]: ap for c, ap in per_category.items()},
            latency_ms=float(np.median(latencies)) * 1e3 if latencies else 0.0,
        )


def evaluate_models(
    models: Sequence[str | os.PathLike[str]],
    data: EvalData,
    *,
    backend: str = "auto",
    device: str | None = None,
    batch: int = 1,
    progress: bool = True,
    names: ClassNames | None = None,
) -> list[ModelScore]:
    """``evaluate_model`` of each model, in the order given; ``names`` go to the checkpoints among them.

    Raises:
        ValueError: ``names`` given, but no model is a checkpoint (exported models keep their names).
    """
    if names is not None and not any(is_checkpoint(model) for model in models):
        raise ValueError(
            "--names applies to checkpoints (.pth, .safetensors, model folders), and none is given; exported "
            "models keep the names they were exported with"
        )
    return [
        evaluate_model(
            model,
            data,
            backend=backend,
            device=device,
            batch=batch,
            progress=progress,
            names=names if is_checkpoint(model) else None,
        )
        for model in models
    ]
