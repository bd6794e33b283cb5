"""The RT-DETRv2 model in PyTorch (needs the ``torch`` extra)."""

from .checkpoint import ModelInfo, infer_config, load_model, read_checkpoint, save_model
from .hf import model_config_from_transformers
from .hf_names import hf_to_official_state_dict
from .postprocess import DeployModel, PostProcessor, postprocess
from .presets import PRESETS, ModelConfig, get_preset
from .rtdetr import (
    RTDETR,
    build_model,
    rtdetrv2_r18vd,
    rtdetrv2_r34vd,
    rtdetrv2_r50vd,
    rtdetrv2_r50vd_m,
    rtdetrv2_r101vd,
    rtdetrv2_tiny,
)

__all__ = [
    "PRESETS",
    "RTDETR",
    "DeployModel",
    "ModelConfig",
    "ModelInfo",
    "PostProcessor",
    "build_model",
    "get_preset",
    "hf_to_official_state_dict",
    "infer_config",
    "load_model",
    "model_config_from_transformers",
    "postprocess",
    "read_checkpoint",
    "rtdetrv2_r101vd",
    "rtdetrv2_r18vd",
    "rtdetrv2_r34vd",
    "rtdetrv2_r50vd",
    "rtdetrv2_r50vd_m",
    "rtdetrv2_tiny",
    "save_model",
]
