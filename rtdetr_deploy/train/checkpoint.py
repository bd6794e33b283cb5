"""Training checkpoints: the package's checkpoint format plus everything needed to continue a run exactly.

A training checkpoint is what ``models.save_model`` writes (so ``load_model`` and ``rtdetr-export`` read it,
taking the EMA weights) with these keys added: ``ema`` (``{'module', 'updates'}``, the official layout),
``optimizer``, ``lr_scheduler``, ``scaler`` and ``train`` (epoch, batches done in it, step, best AP, the
log so far, the configuration and every process's RNG state). Files are written atomically: a run killed at
any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..models import PRESETS, infer_config, read_checkpoint, save_model
from ..models.checkpoint import Checkpoint
from .config import TrainConfig
from .ema import ModelEMA

__all__ = [
    "RunState",
    "load_init_weights",
    "read_training_checkpoint",
    "restore_training",
    "rng_state",
    "save_training_checkpoint",
]

# Keys whose shape depends on the class count (re-initialised by --init) or on the input size (recomputed).
_CLASS_KEYS = ("score_head", "denoising_class_embed")
_SIZE_KEYS = ("decoder.anchors", "decoder.valid_mask")


@dataclass
class RunState:
    """Where a run stands.

    Attributes:
        epoch: the current epoch, from 0.
        batch: batches of ``epoch`` already trained (0 at an epoch boundary).
        best_ap: best COCO AP so far (-1 before the first evaluation).
        history: one dict per finished epoch (losses, AP, lr, time).
    """

    epoch: int = 0
    batch: int = 0
    best_ap: float = -1.0
    history: list[dict[str, float]] = field(default_factory=list)


def rng_state() -> dict[str, Any]:
    """This process's random generators (torch CPU, CUDA when present, Python)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured."""
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


def save_training_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    ema: ModelEMA,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    run: RunState,
    cfg: TrainConfig,
    class_names: tuple[str, ...],
    category_ids: tuple[int, ...],
    rng_states: list[dict[str, Any]],
) -> Path:
    """Write a resumable checkpoint atomically (rank 0 only). ``rng_states`` holds one entry per process."""
    train = {
        **asdict(run),
        "step": scheduler.last_epoch,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "rng": rng_states,
    }
    extra = {
        "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "train": train,
    }
    return save_model(
        model,
        path,
        class_names=list(class_names),
        category_ids=list(category_ids),
        input_size=cfg.input_size,
        extra=extra,
    )


def read_training_checkpoint(
    path: str | os.PathLike[str], *, cfg: TrainConfig, class_names: tuple[str, ...], category_ids: tuple[int, ...]
) -> dict[str, Any]:
    """Read a checkpoint to resume from and check that it belongs to this run's preset, classes and sampling.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable, not written by this trainer, or from another preset, class set or sampling.
    """
    checkpoint = read_checkpoint(path)
    meta = checkpoint.meta
    if not isinstance(meta.get("train"), dict) or "optimizer" not in meta:
        raise CheckpointError(
            f"{path}: holds no training state (not written by rtdetr-train); use --init to start from it"
        )
    preset = meta.get("config", {}).get("name")
    if preset != cfg.preset:
        raise CheckpointError(f"{path}: checkpoint of preset {preset!r}, but this run trains {cfg.preset!r}")
    theirs = list(zip(meta.get("category_ids", []), meta.get("class_names", []), strict=False))
    ours = list(zip(category_ids, class_names, strict=True))
    if theirs != ours:
        raise CheckpointError(
            f"{path}: checkpoint trained on classes {_describe(theirs)}, this dataset has {_describe(ours)}; "
            "use --init to fine-tune on other classes"
        )
    if meta.get("sampling") != cfg.sampling:
        raise CheckpointError(
            f"{path}: checkpoint trained with {meta.get('sampling')} sampling, this run uses {cfg.sampling}; "
            "use --init to fine-tune with another sampling"
        )
    return meta


def restore_training(
    state: dict[str, Any],
    *,
    model: nn.Module,
    ema: ModelEMA,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    rank: int = 0,
) -> RunState:
    """Load a checked training checkpoint (``read_training_checkpoint``) into the run's parts, RNG included."""
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["lr_scheduler"])
    scaler.load_state_dict(state["scaler"])
    train = state["train"]
    set_rng_state(train["rng"][min(rank, len(train["rng"]) - 1)])
    return RunState(train["epoch"], train["batch"], train["best_ap"], train["history"])


def _describe(classes: list[tuple[int, str]]) -> str:
    text = ", ".join(f"{cid}:{name}" for cid, name in classes[:6])
    return f"[{text}{', ...' if len(classes) > 6 else ''}] ({len(classes)})"


def _looks_like(checkpoint: Checkpoint) -> str:
    """``"; they look like preset 'X'"`` (with the flag that picks it), from a folder's config.json or the shapes."""
    name = checkpoint.meta.get("config", {}).get("name")
    if name is None:
        try:
            name = infer_config(checkpoint.state_dict).name
        except CheckpointError:
            return ""
    return f"; they look like preset {name!r}" + (f" (--preset {name})" if name in PRESETS else "")


def load_init_weights(model: nn.Module, path: str | os.PathLike[str]) -> str:
    """Load ``path``'s weights (EMA when present) into ``model`` to start a new run; returns a one-line summary.

    ``path`` is anything ``models.read_checkpoint`` reads: a ``.pth``, a ``.safetensors`` file, or a transformers
    ``save_pretrained`` folder (its weights renamed to the official keys). Class-dependent tensors (score heads,
    denoising class embedding) are kept freshly initialised when the class count differs, and anchors are
    recomputed for the run's input size. Anything else that does not fit raises ``CheckpointError``.
    """
    checkpoint = read_checkpoint(path)
    state_dict = checkpoint.state_dict
    own = model.state_dict()
    reinit, problems = [], []
    for key, value in own.items():
        theirs = state_dict.get(key)
        if key.endswith("num_batches_tracked") or key in _SIZE_KEYS:
            continue
        if theirs is None:
            problems.append(f"missing {key}")
        elif theirs.shape != value.shape:
            (reinit if any(k in key for k in _CLASS_KEYS) else problems).append(key)
    # Running counts exist only where norms are not frozen, a training choice that differs (transformers freezes
    # every backbone's, the official r18vd/r34vd recipes do not): never decisive.
    problems += [f"unexpected {k}" for k in state_dict if k not in own and not k.endswith("num_batches_tracked")]
    if problems:
        name = getattr(getattr(model, "config", None), "name", "?")
        found = _looks_like(checkpoint)
        raise CheckpointError(f"{path}: weights do not fit preset {name!r} ({problems[0]}, ...){found}")
    loadable = {k: v for k, v in state_dict.items() if k in own and k not in reinit and k not in _SIZE_KEYS}
    model.load_state_dict(loadable, strict=False)
    summary = f"loaded {len(loadable)} tensors from {path}"
    if reinit:
        classes = state_dict["decoder.dec_score_head.0.weight"].shape[0]
        summary += f"; class heads re-initialised ({classes} -> {model.num_classes} classes)"
    return summary
