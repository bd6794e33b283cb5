"""ExportConfig: everything ``rtdetr-export`` does, validated before any work starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ExportConfig", "TRT_PRECISIONS", "parse_batch_range", "parse_imgsz"]

TRT_PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class ExportConfig:
    """Options of one export.

    Attributes:
        weights: checkpoint to export (official release, bare state dict or our own).
        out_dir: folder for the ONNX, the verification report and the engine.
        preset: preset name; inferred from the weights when None.
        imgsz: ``(height, width)``; the checkpoint's input size when None.
        sampling: ``"discrete"`` (the default: no GridSample in the graph) or ``"bilinear"``.
        batch: ``(min, opt, max)`` batch sizes; a fixed batch when all three are equal.
        topk: detections per image in the graph's outputs.
        opset: ONNX opset (17 or newer keeps LayerNormalization as one op).
        simplify: run onnxslim on the exported graph.
        keep_unsimplified: also keep the graph as traced, beside the simplified one.
        verify_images: folder of images for verification; generated images when None.
        trt: TensorRT precision to build for (None: ONNX only).
        calib: folder of calibration images (required for int8).
        int8_cpu: also write an ONNX Runtime static-quantized INT8 model.
        workspace_gib: TensorRT builder workspace limit.
        timing_cache: TensorRT timing cache file, read if present and updated after the build.
    """

    weights: Path
    out_dir: Path
    preset: str | None = None
    imgsz: tuple[int, int] | None = None
    sampling: str = "discrete"
    batch: tuple[int, int, int] = (1, 1, 1)
    topk: int = 300
    opset: int = 17
    simplify: bool = True
    keep_unsimplified: bool = False
    verify_images: Path | None = None
    trt: str | None = None
    calib: Path | None = None
    int8_cpu: bool = False
    workspace_gib: float = 4.0
    timing_cache: Path | None = None

    def __post_init__(self) -> None:
        if self.sampling not in ("discrete", "bilinear"):
            raise ValueError(f"--sampling must be 'discrete' or 'bilinear', got {self.sampling!r}")
        if self.imgsz is not None:
            if len(self.imgsz) != 2 or any(s <= 0 or s % 32 for s in self.imgsz):
                raise ValueError(f"--imgsz must be positive multiples of 32, got {self.imgsz}")
        low, opt, high = self.batch
        if not 1 <= low <= opt <= high:
            raise ValueError(f"batch range must satisfy 1 <= MIN <= OPT <= MAX, got {low},{opt},{high}")
        if self.topk < 1:
            raise ValueError(f"--topk must be positive, got {self.topk}")
        if self.opset < 17:
            raise ValueError(f"--opset must be 17 or newer (LayerNormalization), got {self.opset}")
        if self.trt is not None and self.trt not in TRT_PRECISIONS:
            raise ValueError(f"--trt must be one of {', '.join(TRT_PRECISIONS)}, got {self.trt!r}")
        if (self.trt == "int8" or self.int8_cpu) and self.calib is None:
            raise ValueError("INT8 needs calibration images: pass --calib DIR")
        if self.workspace_gib <= 0:
            raise ValueError(f"--workspace must be positive, got {self.workspace_gib}")

    @property
    def dynamic_batch(self) -> bool:
        return self.batch[0] != self.batch[2]


def parse_imgsz(text: str) -> tuple[int, int]:
    """``"640"`` -> (640, 640); ``"384,640"`` -> (384, 640) as (height, width)."""
    try:
        values = [int(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        raise ValueError(f"--imgsz must be N or H,W (integers), got {text!r}") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2:
        raise ValueError(f"--imgsz must be N or H,W, got {text!r}")
    return values[0], values[1]


def parse_batch_range(text: str) -> tuple[int, int, int]:
    """``"1,4,8"`` -> (1, 4, 8) as (min, opt, max)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--dynamic-batch must be MIN,OPT,MAX (integers), got {text!r}") from None
    if len(values) != 3:
        raise ValueError(f"--dynamic-batch must be MIN,OPT,MAX, got {text!r}")
    return values
