"""Hugging Face transformers checkpoints of RT-DETRv2: ``RTDetrV2ForObjectDetection.save_pretrained`` folders.

Such a folder holds ``config.json`` and the weights (``model.safetensors`` or ``pytorch_model.bin``, either possibly
sharded behind an ``.index.json``). This module reads the architecture off ``config.json`` into a ``ModelConfig``;
``hf_names`` renames the tensors to the official keys, and every one is checked against the model that config
describes. transformers itself is not imported (it is a development dependency only).

Where transformers' port departs from the official model, the config built here makes the model compute what
transformers computes for the checkpoint, or the checkpoint is refused with the setting named:

* Decoder depth: transformers has no ``eval_idx`` and returns its last decoder layer, so the config gets
  ``eval_idx=-1`` (transformers' own conversion of ``r50vd_m`` keeps all 6 layers and evaluates the 6th, where
  the official model evaluates the 3rd).
* ``anchor_image_size``: transformers then uses anchors precomputed for that size, which equal the model's at that
  size; it becomes the input size. Without it transformers generates anchors per input, as the model does.
* ``eval_size``: when set, transformers drops the AIFI position embedding at inference (not in training), which
  the model cannot express: refused.
* One point count for every level (``decoder_n_points``) and 3 RepVGG blocks per CSP block fit the model as is.
* transformers computes the AIFI position embedding in float64, the model in float32 (about 1e-6 apart). On
  non-square maps transformers enumerates the positions row by row and the official code (so the model) does
  not: the two agree on square input sizes only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from .hf_names import check_tensors, hf_to_official_state_dict
from .presets import PRESETS, ModelConfig, check_input_size
from .rtdetr import build_model

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_INPUT_SIZE",
    "HF_FORMAT",
    "HFCheckpoint",
    "from_transformers",
    "looks_like_transformers",
    "model_config_from_transformers",
    "read_folder_config",
    "read_safetensors",
    "weight_files",
]

CONFIG_FILE = "config.json"
HF_FORMAT = "transformers"
# Looked for in this order; an ``.index.json`` names the shards of a sharded checkpoint.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# The official eval size: the input size when config.json sets no anchor_image_size.
DEFAULT_INPUT_SIZE = (640, 640)

_OTHER_MODELS = {"rt_detr": "RT-DETR (v1)", "d_fine": "D-FINE", "detr": "DETR", "deformable_detr": "Deformable DETR"}
_SAMPLING = {"default": "bilinear", "discrete": "discrete"}
_DEPTHS = {
    ((2, 2, 2, 2), "basic"): 18,
    ((3, 4, 6, 3), "basic"): 34,
    ((3, 4, 6, 3), "bottleneck"): 50,
    ((3, 4, 23, 3), "bottleneck"): 101,
}
# RTDetrResNetConfig's defaults: what transformers builds when config.json has no backbone_config.
_BACKBONE_DEFAULTS: dict[str, Any] = {
    "model_type": "rt_detr_resnet",
    "num_channels": 3,
    "hidden_act": "relu",
    "downsample_in_first_stage": False,
    "downsample_in_bottleneck": False,
    "embedding_size": 64,
    "hidden_sizes": [256, 512, 1024, 2048],
    "depths": [3, 4, 6, 3],
    "layer_type": "bottleneck",
}
_BACKBONE_FIXED = ("model_type", "num_channels", "hidden_act", "downsample_in_first_stage", "downsample_in_bottleneck")
# RTDetrV2Config settings the model fixes to their official values, which are also transformers' defaults.
_FIXED: dict[str, Any] = {
    "encoder_layers": 1,
    "encode_proj_layers": [2],
    "feat_strides": [8, 16, 32],
    "num_feature_levels": 3,
    "decoder_n_levels": 3,
    "normalize_before": False,
    "with_box_refine": True,
    "learn_initial_query": False,
    "encoder_activation_function": "gelu",
    "activation_function": "silu",
    "decoder_activation_function": "relu",
    "positional_encoding_temperature": 10000,
    "decoder_offset_scale": 0.5,
    "layer_norm_eps": 1e-5,
    "batch_norm_eps": 1e-5,
}
# RTDetrV2Config sizes -> (ModelConfig field, transformers' default).
_SIZES: dict[str, tuple[str, int | float]] = {
    "encoder_hidden_dim": ("hidden_dim", 256),
    "d_model": ("decoder_hidden_dim", 256),
    "encoder_ffn_dim": ("encoder_ffn_dim", 1024),
    "decoder_ffn_dim": ("decoder_ffn_dim", 1024),
    "encoder_attention_heads": ("num_heads", 8),
    "decoder_layers": ("num_decoder_layers", 6),
    "num_queries": ("num_queries", 300),
    "num_denoising": ("num_denoising", 100),
    "hidden_expansion": ("expansion", 1.0),
}


@dataclass(frozen=True)
class HFCheckpoint:
    """A transformers checkpoint read into the model's terms.

    Attributes:
        config: the architecture; its ``eval_size`` is the input size (``anchor_image_size``, else 640x640).
        class_names: ``id2label`` in label order.
        sampling: ``"bilinear"`` (``decoder_method: default``) or ``"discrete"``.
        state_dict: float32 weights under the official keys, without the anchor buffers (``hf_names.GEOMETRY_KEYS``).
    """

    config: ModelConfig
    class_names: tuple[str, ...]
    sampling: str
    state_dict: dict[str, torch.Tensor]


# ---------------------------------------------------- Files -----------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def read_folder_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of a ``save_pretrained`` folder, checked to be an RT-DETRv2 detector's.

    A ``preprocessor_config.json`` that normalises with a mean and std is refused: exported models take what
    transformers' RT-DETR image processor gives by default (RGB scaled to [0, 1], no normalisation).

    Raises:
        CheckpointError: no or unreadable ``config.json``, another model type, or other preprocessing.
    """
    path = folder / CONFIG_FILE
    if not path.is_file():
        found = sorted(p.name for p in folder.glob("*.pth"))[:3]
        hint = f"; it holds {', '.join(found)}: pass that file" if found else ""
        raise CheckpointError(
            f"{folder}: a model folder must be a transformers save_pretrained folder, but it has no {CONFIG_FILE}{hint}"
        )
    config = _read_json(path)
    _check_model_type(config, path)
    preprocessor = folder / "preprocessor_config.json"
    if preprocessor.is_file() and _read_json(preprocessor).get("do_normalize"):
        raise CheckpointError(
            f"{preprocessor}: do_normalize is true; exported models take RGB in [0, 1] without normalisation "
            "(transformers' RT-DETR image processor default)"
        )
    return config


def _check_model_type(config: Mapping[str, Any], source: object) -> None:
    model_type = config.get("model_type")
    if model_type != "rt_detr_v2":
        what = _OTHER_MODELS.get(str(model_type), f"a {model_type!r} model" if model_type else "no model_type")
        raise CheckpointError(
            f"{source}: describes {what} (model_type {model_type!r}); only RT-DETRv2 (model_type 'rt_detr_v2') is "
            "supported"
        )
    architectures = config.get("architectures") or ["RTDetrV2ForObjectDetection"]
    if "RTDetrV2ForObjectDetection" not in architectures:
        raise CheckpointError(
            f"{source}: architectures {architectures} has no detection heads; only RTDetrV2ForObjectDetection is "
            "supported"
        )


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a ``save_pretrained`` folder: one file, or the shards its index names.

    Raises:
        CheckpointError: none of ``WEIGHT_FILES``, or an index naming files that are missing or outside the folder.
    """
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if not name.endswith(".index.json"):
            return [path]
        weight_map = _read_json(path).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{path}: no weight_map")
        shards = sorted(set(map(str, weight_map.values())))
        bad = [s for s in shards if Path(s).name != s or not (folder / s).is_file()]
        if bad:
            raise CheckpointError(f"{path}: names shards that are missing or outside the folder: {', '.join(bad[:3])}")
        return [folder / s for s in shards]
    raise CheckpointError(f"{folder}: no weights beside {CONFIG_FILE} (looked for {', '.join(WEIGHT_FILES)})")


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a ``.safetensors`` file, on the CPU (the format holds no code to run).

    Raises:
        CheckpointError: not a readable safetensors file.
        ImportError: the ``safetensors`` package is missing.
    """
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # SafetensorError for a bad header, OSError, ... for damaged files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: not a readable safetensors file ({first})") from None


def looks_like_transformers(keys: Mapping[str, Any]) -> bool:
    """Whether tensor names are transformers' (``model.backbone.model....``) rather than the official ones."""
    return any(k.startswith(("model.backbone.", "model.encoder.", "model.decoder.")) for k in keys)


# ------------------------------------------------ config.json -> ModelConfig -------------------------------------


def _unsupported(source: object, setting: str, value: object, needed: str) -> CheckpointError:
    return CheckpointError(
        f"{source}: config.json sets {setting}={value!r}, which this package's RT-DETRv2 cannot express ({needed})"
    )


def _same(value: Any, wanted: Any) -> bool:
    return (list(value) if isinstance(value, list | tuple) else value) == wanted


def _backbone(config: Mapping[str, Any], source: object) -> tuple[int, int]:
    """``(depth, width)`` of the ResNet-vd that ``backbone_config`` describes."""
    given = config.get("backbone_config")
    if given is None and (config.get("use_timm_backbone") or config.get("backbone")):
        raise _unsupported(source, "backbone", config.get("backbone"), "needs transformers' own RT-DETR ResNet-vd")
    if given is not None and not isinstance(given, dict):
        raise _unsupported(source, "backbone_config", given, "needs an rt_detr_resnet configuration")
    backbone = {**_BACKBONE_DEFAULTS, "out_indices": [2, 3, 4], **(given or {})}
    for key in _BACKBONE_FIXED:
        if not _same(backbone[key], _BACKBONE_DEFAULTS[key]):
            raise _unsupported(source, f"backbone_config.{key}", backbone[key], f"needs {_BACKBONE_DEFAULTS[key]!r}")
    stages = backbone.get("out_features")
    if not _same(backbone.get("out_indices"), [2, 3, 4]) and not _same(stages, ["stage2", "stage3", "stage4"]):
        raise _unsupported(source, "backbone_config.out_indices", backbone.get("out_indices"), "needs [2, 3, 4]")
    depths, layer_type = backbone["depths"], backbone["layer_type"]
    depth = _DEPTHS.get((tuple(depths), layer_type)) if isinstance(depths, list | tuple) else None
    if depth is None:
        setting = f"backbone_config.depths={depths!r} with layer_type"
        raise _unsupported(source, setting, layer_type, "needs ResNet-18/34 (basic) or ResNet-50/101 (bottleneck)")
    width = backbone["embedding_size"]
    wanted = [width * (4 if depth >= 50 else 1) * 2**i for i in range(4)] if isinstance(width, int) else None
    if wanted is None or width < 2 or not _same(backbone["hidden_sizes"], wanted):
        needed = f"needs {wanted} for embedding_size {width!r}"
        raise _unsupported(source, "backbone_config.hidden_sizes", backbone["hidden_sizes"], needed)
    return depth, width


def _check_fixed(config: Mapping[str, Any], source: object) -> None:
    if config.get("eval_size") is not None:
        raise CheckpointError(
            f"{source}: config.json sets eval_size={config['eval_size']!r}, with which transformers drops the AIFI "
            "position embedding at inference (not in training); set it to null to deploy these weights"
        )
    for key, wanted in _FIXED.items():
        if not _same(config.get(key, wanted), wanted):
            raise _unsupported(source, key, config[key], f"needs {wanted!r}")
    if len(config.get("encoder_in_channels") or [0, 0, 0]) != 3:
        raise _unsupported(source, "encoder_in_channels", config["encoder_in_channels"], "needs 3 levels")


def _sizes(config: Mapping[str, Any], source: object) -> dict[str, Any]:
    """The ``ModelConfig`` fields that ``config.json`` sizes, checked to be numbers in range."""
    fields: dict[str, Any] = {}
    for key, (field, default) in _SIZES.items():
        value = config.get(key, default)
        kind = float if key == "hidden_expansion" else int
        minimum = 0 if key == "num_denoising" else 1e-9
        if isinstance(value, bool) or not isinstance(value, kind | int) or value < minimum:
            sign = "non-negative" if key == "num_denoising" else "positive"
            raise CheckpointError(f"{source}: config.json {key} must be a {sign} {kind.__name__}, got {value!r}")
        fields[field] = kind(value)
    heads = config.get("decoder_attention_heads", 8)
    if heads != fields["num_heads"]:
        needed = f"needs encoder_attention_heads {fields['num_heads']}"
        raise _unsupported(source, "decoder_attention_heads", heads, needed)
    points = config.get("decoder_n_points", 4)
    if isinstance(points, bool) or not isinstance(points, int) or points < 1:
        raise _unsupported(source, "decoder_n_points", points, "needs one positive point count for every level")
    fields["num_points"] = (points,) * 3
    decoder_in = config.get("decoder_in_channels", [fields["hidden_dim"]] * 3)
    if not _same(decoder_in, [fields["hidden_dim"]] * 3):
        raise _unsupported(source, "decoder_in_channels", decoder_in, "needs encoder_hidden_dim on each of 3 levels")
    return fields


def _class_names(config: Mapping[str, Any], source: object) -> tuple[str, ...]:
    id2label = config.get("id2label")
    if id2label is None:  # transformers' default: num_labels, else 2 labels
        count = config.get("num_labels", 2)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise CheckpointError(f"{source}: config.json num_labels must be a positive int, got {count!r}")
        return tuple(str(i) for i in range(count))
    try:
        labels = {int(k): str(v) for k, v in id2label.items()}
    except (AttributeError, TypeError, ValueError):
        labels = {}
    if not labels or sorted(labels) != list(range(len(labels))):
        raise CheckpointError(f"{source}: config.json id2label must map 0..N-1 to names, got {str(id2label)[:80]}")
    return tuple(labels[i] for i in range(len(labels)))


def _input_size(config: Mapping[str, Any], source: object) -> tuple[int, int]:
    size = config.get("anchor_image_size")
    if size is None:
        return DEFAULT_INPUT_SIZE
    try:
        return check_input_size(tuple(size))
    except (TypeError, ValueError):
        raise _unsupported(source, "anchor_image_size", size, "needs [height, width], multiples of 32") from None


def _named(config: ModelConfig) -> ModelConfig:
    """The name, learning rate and ``official`` flag of the preset of the same architecture, else ``custom-rNNvd``.

    Eval size, ``eval_idx`` and frozen norms do not change the weights, so they do not take part in the match.
    """
    free = ("name", "backbone_lr", "official", "eval_size", "eval_idx", "freeze_norm")
    architecture = {k: v for k, v in asdict(config).items() if k not in free}
    for preset in PRESETS.values():
        if {k: v for k, v in asdict(preset).items() if k not in free} == architecture:
            return replace(config, name=preset.name, backbone_lr=preset.backbone_lr, official=preset.official)
    backbone_lr = next(p.backbone_lr for p in PRESETS.values() if p.official and p.depth == config.depth)
    return replace(config, name=f"custom-r{config.depth}vd", backbone_lr=backbone_lr, official=False)


def model_config_from_transformers(config: Mapping[str, Any], *, source: object) -> tuple[ModelConfig, str]:
    """The ``ModelConfig`` and the sampling method that a transformers ``config.json`` (as a dict) describes.

    Raises:
        CheckpointError: another model type, or a setting the model cannot express (named with its value).
    """
    _check_model_type(config, source)
    _check_fixed(config, source)
    depth, width = _backbone(config, source)
    method = config.get("decoder_method", "default")
    if method not in _SAMPLING:
        raise _unsupported(source, "decoder_method", method, "needs 'default' or 'discrete'")
    try:
        model_config = ModelConfig(
            name="",
            depth=depth,
            backbone_width=width,
            freeze_norm=bool(config.get("freeze_backbone_batch_norms", True)),
            backbone_lr=0.0,
            eval_idx=-1,  # transformers returns the last decoder layer
            eval_size=_input_size(config, source),
            **_sizes(config, source),
        )
    except ValueError as exc:
        raise CheckpointError(f"{source}: config.json describes no valid RT-DETRv2 ({exc})") from None
    return _named(model_config), _SAMPLING[method]


def from_transformers(
    config: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], *, source: object
) -> HFCheckpoint:
    """A transformers ``config.json`` (as a dict) and its tensors, checked and in the model's terms.

    Raises:
        CheckpointError: a setting the model cannot express, or tensors that do not fit the config (the first
            few missing, unexpected and misshapen ones named).
    """
    model_config, sampling = model_config_from_transformers(config, source=source)
    class_names = _class_names(config, source)
    state_dict, origin, unmapped = hf_to_official_state_dict(tensors)
    with torch.device("meta"):  # shapes only: nothing is allocated or initialised
        expected = build_model(model_config, num_classes=len(class_names), sampling=sampling).state_dict()
    check_tensors(expected, state_dict, origin, unmapped, source=source)
    state_dict = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    return HFCheckpoint(model_config, class_names, sampling, state_dict)
