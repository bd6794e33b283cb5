"""Reading and writing RT-DETRv2 weights: official release checkpoints, bare state dicts, our own files, and
Hugging Face transformers ``save_pretrained`` folders (read by ``hf``).

Checkpoints are untrusted input: ``.pth``/``.bin`` files are read with ``torch.load(weights_only=True)``, which
refuses pickled code, and ``.safetensors`` files hold no code at all. When no preset is given, the architecture
is read off the tensor shapes (a transformers folder: off its ``config.json``).
"""

from __future__ import annotations

import collections
import os
import pickle
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_path
from ..coco.names import ClassNames, checkpoint_names
from ..contract import check_sampling
from ..errors import CheckpointError
from . import hf
from .backbone import BLOCKS_PER_STAGE
from .hf_names import GEOMETRY_KEYS
from .presets import PRESETS, ModelConfig, check_input_size, get_preset
from .rtdetr import RTDETR, build_model

__all__ = ["ModelInfo", "load_model", "read_checkpoint", "infer_config", "save_model"]

FORMAT_NAME = "rtdetr-deploy"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelInfo:
    """Facts that travel with a model beyond its weights.

    Attributes:
        config: the architecture.
        num_classes: classes of the heads.
        class_names: a name per contiguous label (``str(label)`` when the checkpoint has none).
        category_ids: the dataset's original category id per contiguous label (COCO: 1..90 with gaps).
        input_size: ``(height, width)`` the model runs at.
        sampling: sampling method the weights were trained with.
        source: path the weights were read from.
        names_from: where the names and ids came from, in words (the export prints it).
    """

    config: ModelConfig
    num_classes: int
    class_names: tuple[str, ...]
    category_ids: tuple[int, ...]
    input_size: tuple[int, int]
    sampling: str = "bilinear"
    source: str = ""
    names_from: str = ""


@dataclass(frozen=True)
class Checkpoint:
    """A state dict with official key names and whatever metadata the file carried."""

    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint safely and pick its model weights (``ema.module``, else ``model``, else bare).

    Args:
        path: a ``.pth`` file; a ``.safetensors`` file of official keys (or of transformers' keys, with
            ``config.json`` beside it); or a transformers ``save_pretrained`` folder of ``RTDetrV2ForObjectDetection``,
            whose weights are renamed to the official keys and whose ``meta`` then holds the ``config``, class
            names, sampling and input size that its ``config.json`` describes.

    Raises:
        FileNotFoundError: no such file or folder.
        CheckpointError: not a readable checkpoint, refused by ``weights_only``, holding no weights, or a folder
            (``config.json``) that does not describe RT-DETRv2 weights the model can hold.
    """
    path = Path(path)
    if path.is_dir():
        config = hf.read_folder_config(path)
        tensors: dict[str, torch.Tensor] = {}
        for file in hf.weight_files(path):
            tensors.update(hf.read_safetensors(file) if file.suffix == ".safetensors" else _torch_file(file))
        return _transformers_checkpoint(config, tensors, path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix.lower() == ".safetensors":
        tensors = hf.read_safetensors(path)
        if not hf.looks_like_transformers(tensors):
            return _pick_weights(tensors, path)
        if not (path.parent / hf.CONFIG_FILE).is_file():
            raise CheckpointError(
                f"{path}: tensors named as in transformers' RTDetrV2ForObjectDetection, but no {hf.CONFIG_FILE} beside "
                "them; pass the save_pretrained folder"
            )
        return _transformers_checkpoint(hf.read_folder_config(path.parent), tensors, path)
    return _pick_weights(_load_pickle(path), path)


def _transformers_checkpoint(config: dict[str, Any], tensors: dict[str, torch.Tensor], source: Path) -> Checkpoint:
    """The official-key weights of a transformers checkpoint, with its ``config.json`` as our own files' metadata."""
    found = hf.from_transformers(config, tensors, source=source)
    meta = {
        "format": hf.HF_FORMAT,
        "config": asdict(found.config),
        "num_classes": len(found.class_names),
        "class_names": list(found.class_names),
        "input_size": list(found.config.eval_size),
        "sampling": found.sampling,
    }
    return Checkpoint(state_dict=found.state_dict, meta=meta)


def _torch_file(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of one ``pytorch_model.bin`` (a bare state dict, read with ``weights_only=True``)."""
    return _pick_weights(_load_pickle(path), path).state_dict


def _load_pickle(path: Path) -> object:
    """``torch.load(weights_only=True)`` with one-line ``CheckpointError`` s for refused or damaged files."""
    try:
        # Official training checkpoints carry a Counter (the LR milestones); it is a plain dict subclass.
        with torch.serialization.safe_globals([collections.Counter]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            raise CheckpointError(
                f"{path}: refused to load: the file contains pickled Python objects beyond tensors and plain "
                "containers, which could run code (loaded with weights_only=True); re-save only the state dict"
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({_first_line(exc)})") from None
    except Exception as exc:  # torch.load raises many types for damaged files (IndexError, EOFError, ...)
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint ({_first_line(exc)})") from None
    return obj


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _pick_weights(obj: object, path: Path) -> Checkpoint:
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of weights, found {type(obj).__name__}")
    meta = obj if obj.get("format") == FORMAT_NAME else {}
    ema = obj.get("ema")
    if isinstance(ema, dict) and _is_state_dict(ema.get("module")):
        state_dict = ema["module"]
    elif _is_state_dict(obj.get("model")):
        state_dict = obj["model"]
    elif _is_state_dict(obj):
        state_dict = obj
    else:
        keys = ", ".join(map(str, list(obj)[:8]))
        raise CheckpointError(
            f"{path}: no model weights found (expected 'ema.module', 'model' or a bare state dict); "
            f"top-level keys: {keys}"
        )
    prefix = "module."
    if all(k.startswith(prefix) for k in state_dict):
        state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
    return Checkpoint(state_dict=dict(state_dict), meta=meta)


def infer_config(state_dict: dict[str, torch.Tensor]) -> ModelConfig:
    """The preset whose architecture matches the tensor shapes (eval size read from the anchors when square).

    Raises:
        CheckpointError: the weights are not RT-DETRv2's, or match no preset.
    """
    try:
        found = _architecture_of_weights(state_dict)
    except (KeyError, IndexError, ZeroDivisionError) as exc:
        raise CheckpointError(f"weights are not an RT-DETRv2 state dict (missing or odd tensor {exc})") from None
    for config in PRESETS.values():
        if _architecture_of_config(config) == found:
            eval_size = _eval_size_from_anchors(state_dict, config)
            return config if eval_size is None else config.with_eval_size(eval_size)
    described = ", ".join(f"{k}={v}" for k, v in found.items())
    raise CheckpointError(f"weights match no preset ({described}); pass preset= one of {', '.join(PRESETS)}")


def _architecture_of_config(config: ModelConfig) -> dict[str, Any]:
    """The quantities that tensor shapes reveal, as a preset defines them."""
    return {
        "blocks": BLOCKS_PER_STAGE[config.depth],
        "bottleneck": config.depth >= 50,
        "backbone_width": config.backbone_width,
        "hidden_dim": config.hidden_dim,
        "encoder_ffn_dim": config.encoder_ffn_dim,
        "csp_hidden": int(config.hidden_dim * config.expansion),
        "csp_blocks": round(3 * config.depth_mult),
        "decoder_hidden_dim": config.decoder_hidden_dim,
        "num_decoder_layers": config.num_decoder_layers,
        "decoder_ffn_dim": config.decoder_ffn_dim,
        "num_points": config.num_points,
        "num_heads": config.num_heads,
    }


def _architecture_of_weights(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The same quantities, read off the tensor shapes."""
    num_points = _points_per_level(sd["decoder.decoder.layers.0.cross_attn.num_points_scale"])
    return {
        "blocks": tuple(_count(sd, f"backbone.res_layers.{stage}.blocks.") for stage in range(4)),
        "bottleneck": "backbone.res_layers.0.blocks.0.branch2c.conv.weight" in sd,
        "backbone_width": sd["backbone.conv1.conv1_3.conv.weight"].shape[0],
        "hidden_dim": sd["encoder.input_proj.0.conv.weight"].shape[0],
        "encoder_ffn_dim": sd["encoder.encoder.0.layers.0.linear1.weight"].shape[0],
        "csp_hidden": sd["encoder.fpn_blocks.0.conv1.conv.weight"].shape[0],
        "csp_blocks": _count(sd, "encoder.fpn_blocks.0.bottlenecks."),
        "decoder_hidden_dim": sd["decoder.enc_output.proj.weight"].shape[0],
        "num_decoder_layers": _count(sd, "decoder.decoder.layers."),
        "decoder_ffn_dim": sd["decoder.decoder.layers.0.linear1.weight"].shape[0],
        "num_points": num_points,
        "num_heads": sd["decoder.decoder.layers.0.cross_attn.attention_weights.weight"].shape[0] // sum(num_points),
    }


def _count(sd: dict[str, torch.Tensor], prefix: str) -> int:
    """Number of consecutive numbered children ``prefix{i}.`` present in the keys."""
    indices = {int(k[len(prefix) :].split(".", 1)[0]) for k in sd if k.startswith(prefix)}
    return max(indices) + 1 if indices else 0


def _points_per_level(points_scale: torch.Tensor) -> tuple[int, ...]:
    """Invert the ``num_points_scale`` buffer (``1/n`` repeated ``n`` times per level) into the point counts."""
    counts, i = [], 0
    values = points_scale.tolist()
    while i < len(values):
        n = round(1 / values[i])
        counts.append(n)
        i += n
    return tuple(counts)


def _eval_size_from_anchors(sd: dict[str, torch.Tensor], config: ModelConfig) -> tuple[int, int] | None:
    """Square eval size implied by the stored anchors, or None when it is the preset's or cannot be told."""
    anchors = sd.get("decoder.anchors")
    if anchors is None:
        return None
    cells_per_32px = sum((32 // s) ** 2 for s in config.feat_strides)
    side = round((anchors.shape[1] / cells_per_32px) ** 0.5) * 32
    if side * side // 32**2 * cells_per_32px != anchors.shape[1] or (side, side) == config.eval_size:
        return None
    return side, side


def _num_classes(sd: dict[str, torch.Tensor]) -> int:
    return sd["decoder.dec_score_head.0.weight"].shape[0]


def load_model(
    path: str | os.PathLike[str],
    *,
    preset: str | ModelConfig | None = None,
    sampling: str | None = None,
    num_classes: int | None = None,
    names: ClassNames | None = None,
) -> RTDETR:
    """Build an RT-DETRv2 in eval mode from a checkpoint.

    Args:
        path: an official release checkpoint, a bare state dict (``.pth`` or ``.safetensors``), a checkpoint
            written by this package, or a transformers ``save_pretrained`` folder (see ``read_checkpoint``).
        preset: preset name or config; when omitted, a folder's ``config.json`` or the tensor shapes decide.
        sampling: ``"bilinear"`` or ``"discrete"``; defaults to the sampling the weights were trained with (a
            folder's ``decoder_method``).
        num_classes: expected class count; must agree with the classification head.
        names: class names and original ids to use instead of the checkpoint's (``coco.read_names``). Without
            them, a checkpoint that carries none gets COCO's when it has 80 classes (the official release layout:
            COCO-trained, ids remapped to 1..90), else the label indices.

    Returns:
        The model, with ``model.info`` (a ``ModelInfo``) describing classes, input size and source.

    Raises:
        FileNotFoundError, CheckpointError (a ``ValueError``), ValueError for bad arguments.
    """
    if sampling is not None:
        check_sampling(sampling)
    checkpoint = read_checkpoint(path)
    sd, meta = checkpoint.state_dict, checkpoint.meta
    if "decoder.dec_score_head.0.weight" not in sd:
        raise CheckpointError(f"{path}: weights are not an RT-DETRv2 state dict (no decoder.dec_score_head.0.weight)")
    head_classes = _num_classes(sd)
    if num_classes is not None and num_classes != head_classes:
        raise CheckpointError(f"{path}: num_classes={num_classes} contradicts the classification head ({head_classes})")
    config = _config_for(preset, meta, sd)
    trained_sampling = meta.get("sampling", "bilinear")
    model = build_model(config, num_classes=head_classes, sampling=sampling or trained_sampling)
    if meta.get("format") == hf.HF_FORMAT:  # transformers regenerates anchors; ours are geometry of the config
        sd = {**sd, **{k: v for k, v in model.state_dict().items() if k in GEOMETRY_KEYS}}
    _load_strict(model, sd, config, path)
    model.eval()
    if names is not None:
        names.check_count(head_classes, str(path))
    model.info = _model_info(meta, config, head_classes, trained_sampling, str(path), names)
    return model


def _config_for(preset: str | ModelConfig | None, meta: dict[str, Any], sd: dict[str, torch.Tensor]) -> ModelConfig:
    if isinstance(preset, ModelConfig):
        return preset
    if preset is not None:
        return get_preset(preset)
    if "config" in meta:
        names = {f.name for f in fields(ModelConfig)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items() if k in names}
        return ModelConfig(**values)
    return infer_config(sd)


def _load_strict(model: RTDETR, sd: dict[str, torch.Tensor], config: ModelConfig, path: object) -> None:
    """``load_state_dict(strict=True)`` with a one-line account of what does not fit."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in expected and not k.endswith("num_batches_tracked")]
    mismatched = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in sd and sd[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        parts = [
            f"{name} ({len(keys)}): {', '.join(keys[:3])}"
            for name, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
            if keys
        ]
        raise CheckpointError(f"{path}: weights do not fit preset {config.name!r}: " + "; ".join(parts))
    model.load_state_dict(sd, strict=True)


def _model_info(
    meta: dict[str, Any], config: ModelConfig, num_classes: int, sampling: str, source: str, names: ClassNames | None
) -> ModelInfo:
    stored = (tuple(meta.get("class_names") or ()), tuple(meta.get("category_ids") or ()))
    class_names, category_ids, names_from = checkpoint_names(num_classes, names=names, stored=stored)
    if len(class_names) != num_classes or len(category_ids) != num_classes:
        raise CheckpointError(f"{source}: checkpoint lists {len(class_names)} class names for {num_classes} classes")
    input_size = check_input_size(tuple(meta.get("input_size") or config.eval_size))
    return ModelInfo(config, num_classes, class_names, category_ids, input_size, sampling, source, names_from)


def save_model(
    model: RTDETR,
    path: str | os.PathLike[str],
    *,
    class_names: list[str] | None = None,
    category_ids: list[int] | None = None,
    input_size: tuple[int, int] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint of this package's format atomically; ``extra`` adds trainer state (optimizer, ...)."""
    info: ModelInfo | None = getattr(model, "info", None)
    num_classes = model.num_classes
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": asdict(model.config),
        "num_classes": num_classes,
        "class_names": list(class_names or (info.class_names if info else [str(i) for i in range(num_classes)])),
        "category_ids": list(category_ids or (info.category_ids if info else range(num_classes))),
        "input_size": list(input_size or (info.input_size if info else model.config.eval_size)),
        "sampling": model.sampling,
        "model": model.state_dict(),
        **(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)
