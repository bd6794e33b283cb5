"""Names of the files an export writes and of the model files the runtime reads: one rule for every tool.

``rtdetr-export best.pth`` writes, beside each other::

    best.onnx              FP32 (the verified graph)       best.verify.json   the verification report
    best.fp16.onnx         FP16 with FP32 islands          best.fp16.engine   TensorRT engines (+ .json sidecar)
    best.int8.onnx         Q/DQ INT8 for TensorRT          best.int8-cpu.onnx Q/DQ INT8 for ONNX Runtime (CPU)
    best.openvino-fp32.xml OpenVINO IR, f32 inference      best.openvino-bf16.xml  the same IR, run in BF16
    best.openvino-int8.xml OpenVINO IR, NNCF INT8          (each .xml with its weights in the .bin beside it)

A *variant* names one of these graphs; its precision is what the model's metadata records (``int8`` for both
INT8 variants). The OpenVINO variants (``openvino-fp32``, ``openvino-bf16``, ``openvino-int8``) are
``OPENVINO_VARIANTS``. ``rtdetr-export --ncnn`` writes a folder, ``best.ncnn/``, that opens like a model file.
Checkpoints are ``.pth`` and ``.safetensors`` files and transformers model folders (a
folder with a ``config.json``, written by ``save_pretrained``). Which backend opens which file is the runtime's
backend registry (``runtime.registry``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "MODEL_FOLDER_FILE",
    "MODEL_SUFFIXES",
    "OPENVINO_PRECISIONS",
    "OPENVINO_VARIANTS",
    "ENGINE_FOLDER_SUFFIXES",
    "VARIANTS",
    "engine_path",
    "is_engine_folder",
    "is_checkpoint",
    "is_model_folder",
    "onnx_path",
    "openvino_path",
    "openvino_weights_path",
    "precision_of_variant",
    "report_path",
    "stem_of",
    "target_path",
    "variant_candidates",
]

# Variant -> tag between the stem and the suffix ("" for the FP32 graph).
VARIANTS: dict[str, str] = {"fp32": "", "fp16": ".fp16", "int8": ".int8", "int8-cpu": ".int8-cpu"}
# OpenVINO IR precision -> variant (the tag is ".<variant>"); the weights are the .bin beside each .xml.
OPENVINO_PRECISIONS = ("fp32", "bf16", "int8")
OPENVINO_VARIANTS: dict[str, str] = {f"openvino-{precision}": precision for precision in OPENVINO_PRECISIONS}
# Suffixes of model files (lower case): exported graphs, engines and IRs, and checkpoints.
MODEL_SUFFIXES = (".onnx", ".engine", ".pth", ".safetensors", ".xml", ".mnn", ".tflite", ".rknn", ".ncnn")
# Suffixes of engines written as a folder of files (``best.ncnn/``: ncnn's two graphs, anchors and the sidecar).
ENGINE_FOLDER_SUFFIXES = (".ncnn",)
# The file that makes a folder a model: transformers' save_pretrained writes it beside the weights.
MODEL_FOLDER_FILE = "config.json"
# Longest tags first, so that "best.int8-cpu" is not read as "best.int8" plus "-cpu".
_TAGS = sorted(
    [*(tag for tag in VARIANTS.values() if tag), *(f".{name}" for name in OPENVINO_VARIANTS)], key=len, reverse=True
)


def _check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown model variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return variant


def precision_of_variant(variant: str) -> str:
    """The precision a variant's metadata records: ``int8-cpu`` -> ``int8``, ``openvino-bf16`` -> ``bf16``, ...,
    the other ONNX variants unchanged."""
    if variant in OPENVINO_VARIANTS:
        return OPENVINO_VARIANTS[variant]
    return "int8" if _check_variant(variant) == "int8-cpu" else variant


def stem_of(path: str | os.PathLike[str]) -> str:
    """The export's stem of any of its files: ``best.int8-cpu.onnx``, ``best.fp16.engine`` -> ``best``."""
    name = Path(path).name
    for suffix in (*MODEL_SUFFIXES, ".verify.json"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    for tag in _TAGS:
        if name.endswith(tag):
            return name[: -len(tag)]
    return name


def onnx_path(folder: str | os.PathLike[str], stem: str, variant: str = "fp32") -> Path:
    """``folder/stem[.tag].onnx`` of ``variant``."""
    return Path(folder) / f"{stem}{VARIANTS[_check_variant(variant)]}.onnx"


def engine_path(folder: str | os.PathLike[str], stem: str, precision: str) -> Path:
    """``folder/stem.<precision>.engine`` (``fp32``, ``fp16`` or ``int8``)."""
    if precision not in ("fp32", "fp16", "int8"):
        raise ValueError(f"unknown TensorRT precision {precision!r}; choose from fp32, fp16, int8")
    return Path(folder) / f"{stem}.{precision}.engine"


def openvino_path(folder: str | os.PathLike[str], stem: str, precision: str) -> Path:
    """``folder/stem.openvino-<precision>.xml`` (``fp32``, ``bf16`` or ``int8``); its weights are
    ``openvino_weights_path`` of it."""
    if precision not in OPENVINO_PRECISIONS:
        raise ValueError(f"unknown OpenVINO precision {precision!r}; choose from {', '.join(OPENVINO_PRECISIONS)}")
    return Path(folder) / f"{stem}.openvino-{precision}.xml"


# Third-party engine (``rtdetr-export --mnn/--tflite/--rknn/--ncnn``) -> suffix of its file, or of its folder
# (``ENGINE_FOLDER_SUFFIXES``); each has a JSON sidecar (``runtime.engine_sidecar``).
TARGET_SUFFIXES: dict[str, str] = {"mnn": ".mnn", "litert": ".tflite", "rknn": ".rknn", "ncnn": ".ncnn"}


def target_path(folder: str | os.PathLike[str], stem: str, target: str, tag: str = "") -> Path:
    """``folder/stem[.tag]<suffix>`` of a third-party engine file: ``best.mnn``, ``best.tflite``,
    ``best.rk3588-fp16.rknn`` (tag ``rk3588-fp16``)."""
    if target not in TARGET_SUFFIXES:
        raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGET_SUFFIXES)}")
    return Path(folder) / f"{stem}{'.' + tag if tag else ''}{TARGET_SUFFIXES[target]}"


def openvino_weights_path(xml: str | os.PathLike[str]) -> Path:
    """The ``.bin`` that holds the weights of the OpenVINO IR ``xml`` (same name, beside it)."""
    return Path(xml).with_suffix(".bin")


def report_path(folder: str | os.PathLike[str], stem: str) -> Path:
    """``folder/stem.verify.json``: the export's verification report."""
    return Path(folder) / f"{stem}.verify.json"


def is_model_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder holding ``config.json`` (a transformers ``save_pretrained`` folder)."""
    return Path(path).is_dir() and (Path(path) / MODEL_FOLDER_FILE).is_file()


def is_engine_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names an engine written as a folder (``best.ncnn``), by its suffix alone."""
    return Path(path).suffix.lower() in ENGINE_FOLDER_SUFFIXES


def is_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds weights for the PyTorch model (``.pth``, ``.safetensors`` or a model folder)."""
    return is_model_folder(path) or Path(path).suffix.lower() in (".pth", ".safetensors")


def variant_candidates(path: str | os.PathLike[str], precision: str, *, device: str = "cpu") -> list[Path]:
    """The files ``rtdetr-export`` writes for ``precision`` beside ``path`` (an ``.onnx``, ``.engine`` or OpenVINO
    ``.xml``), preferred first: for INT8 the ONNX Runtime graph first on the CPU, the TensorRT-targeted one on CUDA."""
    path = Path(path)
    stem, folder = stem_of(path), path.parent
    if path.suffix.lower() == ".engine":
        return [engine_path(folder, stem, precision)]
    if path.suffix.lower() == ".xml":
        return [openvino_path(folder, stem, precision)]
    if precision == "int8":
        variants = ["int8-cpu", "int8"] if not device.startswith("cuda") else ["int8", "int8-cpu"]
    else:
        variants = [_check_variant(precision)]
    return [onnx_path(folder, stem, variant) for variant in variants]
