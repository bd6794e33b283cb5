"""The facts an exported model carries about itself (ONNX ``metadata_props``, engine sidecar JSON).

The runtime reads everything it needs from here (input size, preprocessing, classes, top-k), so an exported
file needs no side configuration. Torch-free: the runtime imports this module.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from .contract import check_batch_range, check_sampling

__all__ = ["ModelMetadata", "Preprocessing", "GELU_FORMS", "OUTPUT_CONTRACT", "OUTPUT_KINDS", "PRECISIONS"]

OUTPUT_CONTRACT = "labels[B,K]int64,boxes[B,K,4]xyxy_pixels,scores[B,K]float32;v1"
# bf16 exists only for OpenVINO IRs (rtdetr-export --openvino bf16); ONNX files and engines record the others.
PRECISIONS = ("fp32", "fp16", "int8", "bf16")
# How the encoder's GELU is computed in a graph (same weights): "erf" as trained (ONNX Erf); "poly", Erf-free and
# within 1e-6 of it in float32; "tanh", PyTorch's tanh approximation (a different function, up to 5e-4 away).
GELU_FORMS = ("erf", "poly", "tanh")
# What a graph returns: "detections" (labels, boxes, scores: the official deploy outputs) or "raw" (pred_logits
# [N, Q, C], pred_boxes [N, Q, 4] cxcywh in [0, 1]; the runtime does sigmoid, top-k and the label/query split).
OUTPUT_KINDS = ("detections", "raw")


@dataclass(frozen=True)
class Preprocessing:
    """How images become the ``images`` input: BGR uint8 to RGB, plain resize, ``x * scale``, then ``(x-mean)/std``.

    The official weights use no mean/std (``None``): RGB in [0, 1].

    Attributes:
        fused: the graph does all of this itself (``rtdetr-export --fuse-preprocess``): its input is ``frames``
            ``[N, H, W, 3]`` uint8 BGR of any size, and it derives ``orig_target_sizes`` from the frames' shape.
            Files written before this field existed (and files without it) are ``False``.
    """

    color: str = "rgb"
    resize: str = "plain"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    fused: bool = False

    def __post_init__(self) -> None:
        if self.color not in ("rgb", "bgr"):
            raise ValueError(f"preprocessing color must be 'rgb' or 'bgr', got {self.color!r}")
        if self.resize != "plain":
            raise ValueError(f"preprocessing resize must be 'plain', got {self.resize!r}")
        if not isinstance(self.fused, bool):
            raise ValueError(f"preprocessing fused must be true or false, got {self.fused!r}")

    def as_props(self) -> dict[str, object]:
        """JSON-ready fields; ``fused`` only when true, so unfused files stay readable by older versions."""
        values = asdict(self)
        if not self.fused:
            del values["fused"]
        return values


@dataclass(frozen=True)
class ModelMetadata:
    """Self-description of an exported detector.

    Attributes:
        preset: model preset name (``r18vd``, ..., ``tiny``).
        input_size: ``(height, width)`` of the ``images`` input.
        class_names: one name per contiguous label.
        category_ids: the dataset's original category id per contiguous label.
        sampling: ``"bilinear"`` or ``"discrete"``.
        topk: detections the graph returns per image (K).
        precision: what the model computes in: ``"fp32"``, ``"fp16"``, ``"int8"``, or ``"bf16"`` (OpenVINO IRs
            only: FP32 weights that the runtime runs with OpenVINO's bf16 inference precision).
        batch: ``(min, opt, max)`` batch sizes the model accepts; equal values for a fixed batch.
        orig_sizes_dtype: dtype of the ``orig_target_sizes`` input (``"int64"``; engines may declare ``"int32"``).
        preprocessing: how to turn images into the input tensor.
        box_format: the ``boxes`` output: ``"xyxy_pixels"`` (x1, y1, x2, y2 in the original image's pixels,
            scaled by ``orig_target_sizes`` given as width, height).
        package_version: version of rtdetr-deploy that exported the model.
        source_sha256: SHA-256 of the checkpoint it was exported from.
        opset: ONNX opset of the graph.
        output_contract: names, shapes and meaning of the outputs.
        outputs: ``"detections"`` or ``"raw"`` (``OUTPUT_KINDS``); files without the key are ``"detections"``.
        gelu: how the encoder's GELU is computed (``GELU_FORMS``); files without the key are ``"erf"``.
    """

    preset: str
    input_size: tuple[int, int]
    class_names: tuple[str, ...]
    category_ids: tuple[int, ...]
    sampling: str = "discrete"
    topk: int = 300
    precision: str = "fp32"
    batch: tuple[int, int, int] = (1, 1, 1)
    orig_sizes_dtype: str = "int64"
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    box_format: str = "xyxy_pixels"
    package_version: str = ""
    source_sha256: str = ""
    opset: int = 17
    output_contract: str = OUTPUT_CONTRACT
    outputs: str = "detections"
    gelu: str = "erf"

    def __post_init__(self) -> None:
        if self.outputs not in OUTPUT_KINDS:
            raise ValueError(f"outputs must be one of {', '.join(OUTPUT_KINDS)}, got {self.outputs!r}")
        if self.gelu not in GELU_FORMS:
            raise ValueError(f"gelu must be one of {', '.join(GELU_FORMS)}, got {self.gelu!r}")
        if len(self.class_names) != len(self.category_ids):
            raise ValueError(f"{len(self.class_names)} class names but {len(self.category_ids)} category ids")
        check_sampling(self.sampling)
        if self.box_format != "xyxy_pixels":
            raise ValueError(f"box_format must be 'xyxy_pixels', got {self.box_format!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        check_batch_range(self.batch)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_props(self) -> dict[str, str]:
        """String key/values for ONNX ``metadata_props`` (non-strings JSON-encoded)."""
        props = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "preprocessing":
                value = value.as_props()
            props[f.name] = value if isinstance(value, str) else json.dumps(value)
        props["num_classes"] = str(self.num_classes)
        return props

    @classmethod
    def from_props(cls, props: dict[str, str]) -> ModelMetadata:
        """Inverse of ``to_props``; raises ``ValueError`` naming the first missing or malformed key."""
        values = {}
        for f in fields(cls):
            if f.name not in props:
                if f.name in ("preset", "input_size", "class_names", "category_ids"):
                    raise ValueError(f"model metadata lacks {f.name!r}: not exported by rtdetr-export?")
                continue
            raw = props[f.name]
            try:
                value = raw if f.type == "str" else json.loads(raw)
            except json.JSONDecodeError:
                raise ValueError(f"model metadata {f.name!r} is not valid JSON: {raw[:60]!r}") from None
            if f.name == "preprocessing":
                value = Preprocessing(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
            elif isinstance(value, list):
                value = tuple(value)
            values[f.name] = value
        return cls(**values)
