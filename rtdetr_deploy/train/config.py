"""TrainConfig: everything one training run does, validated before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..contract import check_sampling
from ..models.presets import check_input_size, get_preset

__all__ = ["TrainConfig", "MULTISCALE_RATIOS"]

# The official multi-scale batch sizes (480..800 around 640, with 640 drawn three times as often), as ratios.
MULTISCALE_RATIOS = (0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.0, 1.0, 1.05, 1.1, 1.15, 1.2, 1.25)


@dataclass(frozen=True)
class TrainConfig:
    """Options of one training run. Defaults are the official RT-DETRv2 recipe.

    Attributes:
        data: ``"synthetic"`` (the embedded set, generated on first use) or a folder holding a COCO-format set:
            ``annotations/instances_{train,val}[2017].json`` with images in ``images/{train,val}``,
            ``{train,val}2017`` or ``images/``; or Roboflow's ``{train,valid}/_annotations.coco.json``.
        out: output folder for checkpoints (``last.pth``, ``best.pth``), logs and the plot.
        preset: model preset (``r18vd``, ``r34vd``, ``r50vd_m``, ``r50vd``, ``r101vd`` or ``tiny``).
        sampling: ``"bilinear"`` or ``"discrete"``; discrete freezes the sampling offsets (official dsp recipe).
        imgsz: ``(height, width)`` the model trains and evaluates at; the preset's size when None.
        epochs: epochs to train (an upper bound when ``minutes`` is set).
        stop_epoch: first epoch without the strong augmentation (photometric distortion, zoom-out, IoU crop)
            and without multi-scale batches; ``epochs - 3`` (at least 1) when None. With a time budget the
            last ``epochs - stop_epoch`` epochs are counted back from the budget instead.
        minutes: time budget; training stops when it is spent (mid-epoch if need be), then evaluates and saves.
        batch: images per optimizer step over all processes (divided among them under torchrun).
        workers: data-loading worker processes per training process.
        threads: torch intra-op threads per process on CPU; None: the cores left over by the loader workers
            (at least 1). Oversubscribed cores make OpenMP threads spin-wait, which can slow a step severalfold.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        lr: AdamW learning rate of everything but the backbone.
        backbone_lr: learning rate of the backbone; the preset's scale-adaptive value when None.
        weight_decay: AdamW weight decay (none on norm layers and biases).
        warmup_steps: linear learning-rate warm-up, in optimizer steps.
        ema_decay: decay of the exponential moving average of the weights (what is evaluated and exported).
        ema_warmups: steps over which the EMA decay ramps up to ``ema_decay``.
        clip_max_norm: gradient-norm clipping (0 disables).
        amp: mixed precision (float16 autocast and loss scaling); only ever used on CUDA.
        multiscale: random batch sizes ``imgsz * MULTISCALE_RATIOS`` until ``stop_epoch``.
        init: start from these weights (official release or ours); heads are re-initialised when the class
            count differs.
        resume: continue the run saved in this checkpoint (same step, learning rate, EMA and RNG state).
        overwrite: allow a fresh run to replace checkpoints already in ``out``.
        seed: seeds weights, sampling order and augmentation.
        checkpoint_steps: also write ``last.pth`` every this many steps (0: at the end of each epoch only).
        eval_topk: detections per image kept for COCO evaluation.
        synthetic_images: training images of the generated set when ``data="synthetic"``.
        progress: show tqdm progress bars.
    """

    data: str | Path = "synthetic"
    out: Path = Path("runs/train")
    preset: str = "r18vd"
    sampling: str = "bilinear"
    imgsz: tuple[int, int] | None = None
    epochs: int = 72
    stop_epoch: int | None = None
    minutes: float | None = None
    batch: int = 16
    workers: int = 2
    threads: int | None = None
    device: str = "auto"
    lr: float = 1e-4
    backbone_lr: float | None = None
    weight_decay: float = 1e-4
    warmup_steps: int = 2000
    ema_decay: float = 0.9999
    ema_warmups: int = 2000
    clip_max_norm: float = 0.1
    amp: bool = True
    multiscale: bool = True
    init: Path | None = None
    resume: Path | None = None
    overwrite: bool = False
    seed: int = 0
    checkpoint_steps: int = 0
    eval_topk: int = 300
    synthetic_images: int = 800
    progress: bool = True
    multiscale_ratios: tuple[float, ...] = field(default=MULTISCALE_RATIOS, repr=False)

    def __post_init__(self) -> None:
        get_preset(self.preset)
        check_sampling(self.sampling)
        if self.imgsz is not None:
            object.__setattr__(self, "imgsz", check_input_size(tuple(self.imgsz)))
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.stop_epoch is not None and not 0 <= self.stop_epoch <= self.epochs:
            raise ValueError(f"stop_epoch must lie in 0..epochs ({self.epochs}), got {self.stop_epoch}")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"minutes must be positive, got {self.minutes}")
        for name in ("batch", "warmup_steps", "ema_warmups", "eval_topk", "synthetic_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("workers", "checkpoint_steps", "clip_max_norm", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")
        for name in ("lr", "backbone_lr"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in (0, 1), got {self.ema_decay}")
        if self.init is not None and self.resume is not None:
            raise ValueError("init and resume exclude each other: resume continues a run, init starts a new one")
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if not self.multiscale_ratios or any(r <= 0 for r in self.multiscale_ratios):
            raise ValueError(f"multiscale_ratios must be positive, got {self.multiscale_ratios}")
        object.__setattr__(self, "out", Path(self.out))

    @property
    def input_size(self) -> tuple[int, int]:
        """``(height, width)`` of training and evaluation."""
        return self.imgsz or get_preset(self.preset).eval_size

    @property
    def resolved_stop_epoch(self) -> int:
        """``stop_epoch`` resolved: epochs before it use strong augmentation and multi-scale batches."""
        return self.stop_epoch if self.stop_epoch is not None else max(self.epochs - 3, 1)

    @property
    def resolved_backbone_lr(self) -> float:
        """``backbone_lr``, or the preset's scale-adaptive value when None."""
        return self.backbone_lr if self.backbone_lr is not None else get_preset(self.preset).backbone_lr

    def multiscale_sizes(self) -> tuple[tuple[int, int], ...]:
        """Batch sizes ``(height, width)`` of multi-scale training: ``imgsz * ratio`` rounded to multiples of 32."""
        height, width = self.input_size
        return tuple(
            (max(32, int(height * r / 32 + 0.5) * 32), max(32, int(width * r / 32 + 0.5) * 32))
            for r in self.multiscale_ratios
        )
