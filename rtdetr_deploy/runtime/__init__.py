"""The torch-free, NMS-free inference runtime: ``Detector`` on ONNX Runtime, TensorRT, OpenVINO or PyTorch.

Importing this package needs only numpy, OpenCV and the package's own metadata; each backend imports its runtime
(onnxruntime, tensorrt + cuda-python, openvino, torch) when a model is opened.
"""

from __future__ import annotations

from .backend import Backend
from .config import RuntimeConfig
from .detections import Detections
from .detector import Detector
from .drawing import draw_detections
from .onnxruntime_backend import OrtBackend
from .openvino_backend import OpenVinoBackend
from .pipeline import PipelineResult, run_pipeline
from .registry import REGISTRY, BackendEntry, open_backend
from .sinks import CocoResultsWriter, ImageWriter, VideoWriter
from .sources import Frame, open_source
from .tensorrt_backend import TrtBackend
from .tensors import TensorSpec
from .torch_backend import TorchBackend

__all__ = [
    "Backend",
    "BackendEntry",
    "CocoResultsWriter",
    "Detections",
    "Detector",
    "Frame",
    "ImageWriter",
    "OpenVinoBackend",
    "OrtBackend",
    "PipelineResult",
    "REGISTRY",
    "RuntimeConfig",
    "TensorSpec",
    "TorchBackend",
    "TrtBackend",
    "VideoWriter",
    "draw_detections",
    "open_backend",
    "open_source",
    "run_pipeline",
]
