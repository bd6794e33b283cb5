"""``fit(cfg)``: the whole training run: data, model, optimizer, EMA, the epoch loop, checkpoints and logs."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..coco import CocoSet, find_coco_split, load_coco
from ..data.synthetic import SyntheticConfig, ensure_synthetic
from ..models import build_model, get_preset
from .checkpoint import (
    RunState,
    load_init_weights,
    read_training_checkpoint,
    restore_training,
    rng_state,
    save_training_checkpoint,
)
from .config import TrainConfig
from .criterion import SetCriterion
from .dataset import CocoDetection, collate
from .distributed import Distributed, EpochSampler, all_gather, broadcast, setup_distributed
from .ema import ModelEMA
from .engine import evaluate, train_one_epoch
from .history import format_header, format_row, write_history
from .matcher import HungarianMatcher
from .optim import build_optimizer, build_warmup, freeze_sampling_offsets, freeze_stem
from .plots import plot_history

__all__ = ["FitResult", "fit", "load_data"]


@dataclass(frozen=True)
class FitResult:
    """What a run produced: checkpoints, the last evaluation of the EMA weights, and the log."""

    out: Path
    last: Path
    best: Path
    metrics: dict[str, float]
    history: list[dict[str, float]]
    steps: int
    stopped_by_budget: bool


def fit(
    cfg: TrainConfig, *, on_step: Callable[[int, int], None] | None = None, log: Callable[[str], None] = print
) -> FitResult:
    """Train, evaluate every epoch on the validation split, and keep ``last.pth`` and ``best.pth`` in ``cfg.out``.

    Args:
        cfg: the run's options (run under ``torchrun`` for several processes).
        on_step: called with ``(epoch, batches done in it)`` after each step, once any checkpoint is written.
        log: where progress lines go (rank 0 only).

    Raises:
        FileNotFoundError, FileExistsError and ValueError (``CheckpointError`` included) for bad input, before anything
        is written; ``FloatingPointError`` if the loss diverges.

    On CPU the process's torch thread count is set for the run (``cfg.threads``) and restored afterwards.
    """
    threads = torch.get_num_threads()
    try:
        return _train(cfg, on_step, log)
    finally:
        torch.set_num_threads(threads)


@dataclass
class _Parts:
    """What one run trains and steps: the model (and its DDP wrapper), EMA, optimizer, schedule, scaler, loss."""

    model: torch.nn.Module
    ddp_model: torch.nn.Module
    ema: ModelEMA
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    criterion: SetCriterion

    def state(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in ("model", "ema", "optimizer", "scheduler", "scaler")}


def _build_parts(cfg: TrainConfig, dist_info: Distributed, num_classes: int, say: Callable[[str], None]) -> _Parts:
    torch.manual_seed(cfg.seed)
    preset = get_preset(cfg.preset).with_eval_size(cfg.input_size)
    model = build_model(preset, num_classes=num_classes, sampling=cfg.sampling)
    if cfg.init is not None:
        say(load_init_weights(model, cfg.init))
    if preset.freeze_norm:
        freeze_stem(model)
    if cfg.sampling == "discrete":
        say(f"discrete sampling: {freeze_sampling_offsets(model)} sampling-offset tensors frozen (dsp recipe)")
    device = dist_info.device
    if dist_info.world > 1 and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    optimizer = build_optimizer(model, lr=cfg.lr, backbone_lr=cfg.resolved_backbone_lr, weight_decay=cfg.weight_decay)
    ddp_model = model
    if dist_info.world > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)
    return _Parts(
        model=model,
        ddp_model=ddp_model,
        ema=ModelEMA(model, decay=cfg.ema_decay, warmups=cfg.ema_warmups),
        optimizer=optimizer,
        scheduler=build_warmup(optimizer, warmup_steps=cfg.warmup_steps),
        scaler=torch.amp.GradScaler(device.type, enabled=cfg.amp and device.type == "cuda"),
        criterion=SetCriterion(HungarianMatcher(), num_classes=num_classes),
    )


def _restore(cfg: TrainConfig, parts: _Parts, train_set: CocoSet, rank: int, say: Callable[[str], None]) -> RunState:
    """A fresh run's state, or the resumed one's (every generator seeded per process either way)."""
    torch.manual_seed(cfg.seed + rank)
    if cfg.resume is None:
        return RunState()
    state = read_training_checkpoint(
        cfg.resume, cfg=cfg, class_names=train_set.class_names, category_ids=train_set.category_ids
    )
    run = restore_training(state, **parts.state(), rank=rank)
    if run.epoch >= cfg.epochs:
        raise ValueError(f"{cfg.resume} has already trained {run.epoch} of {cfg.epochs} epochs; raise --epochs")
    say(f"resuming {cfg.resume}: epoch {run.epoch + 1}, batch {run.batch}, step {parts.scheduler.last_epoch}")
    return run


class _EpochLoop:
    """The epoch loop of one run: train, evaluate the EMA weights, log, keep ``last.pth`` and ``best.pth``."""

    def __init__(
        self, cfg: TrainConfig, dist_info: Distributed, parts: _Parts, run: RunState, sets: tuple, **hooks
    ) -> None:
        self.cfg, self.dist, self.parts, self.run = cfg, dist_info, parts, run
        self.train_set, self.val_set = sets
        self.on_step, self.say = hooks["on_step"], hooks["say"]
        self.train_data = CocoDetection(self.train_set, size=cfg.input_size, train=True, seed=cfg.seed)
        self.train_loader = _loader(self.train_data, cfg, dist_info, shuffle=True)
        val_data = CocoDetection(self.val_set, size=cfg.input_size, train=False)
        self.val_loader = _loader(val_data, cfg, dist_info, shuffle=False)
        if self.train_loader.sampler.batches_per_epoch == 0:
            raise ValueError(f"{len(self.train_data)} training images make no full batch of {cfg.batch}; lower --batch")
        self.last, self.best = cfg.out / "last.pth", cfg.out / "best.pth"
        self.epoch_seconds: list[float] = []

    def save(self, path: Path) -> None:
        rng_states = all_gather(rng_state(), self.dist.world)
        if self.dist.is_main:
            classes = {"class_names": self.train_set.class_names, "category_ids": self.train_set.category_ids}
            save_training_checkpoint(
                path, **self.parts.state(), **classes, run=self.run, cfg=self.cfg, rng_states=rng_states
            )

    def _after_step(self, batch: int) -> None:
        self.run.batch = batch
        if self.cfg.checkpoint_steps and self.parts.scheduler.last_epoch % self.cfg.checkpoint_steps == 0:
            self.save(self.last)
        if self.on_step is not None:
            self.on_step(self.run.epoch, batch)

    def epoch(self, deadline: float | None, started: float) -> bool:
        """Train one epoch (or until ``deadline``), evaluate, save; returns whether the budget stopped it."""
        cfg, run, parts = self.cfg, self.run, self.parts
        strong = broadcast(_strong_epoch(cfg, run.epoch, deadline, self.epoch_seconds), self.dist.world)
        self.train_data.set_epoch(run.epoch, strong=strong)
        self.train_loader.sampler.set_epoch(run.epoch, start_batch=run.batch)
        epoch_start, first_batch = time.monotonic(), run.batch
        losses, stopped = train_one_epoch(
            parts.ddp_model,
            parts.criterion,
            self.train_loader,
            parts.optimizer,
            scheduler=parts.scheduler,
            ema=parts.ema,
            scaler=parts.scaler,
            dist_info=self.dist,
            sizes=(cfg.multiscale_sizes() if cfg.multiscale else ()) if strong else (),
            seed=cfg.seed,
            first_batch=first_batch,
            clip_max_norm=cfg.clip_max_norm,
            deadline=deadline,
            on_step=self._after_step,
            desc=f"epoch {run.epoch + 1}/{cfg.epochs}",
            progress=cfg.progress and self.dist.is_main,
        )
        finished = run.batch >= self.train_loader.sampler.batches_per_epoch
        if finished and first_batch == 0:
            self.epoch_seconds.append(time.monotonic() - epoch_start)
        metrics, _ = evaluate(
            parts.ema.module,
            self.val_loader,
            self.val_set.coco,
            category_ids=self.val_set.category_ids,
            dist_info=self.dist,
            topk=cfg.eval_topk,
            progress=cfg.progress and self.dist.is_main,
        )
        self._record(losses, metrics, strong=strong, finished=finished, minutes=(time.monotonic() - started) / 60)
        return stopped

    def _record(self, losses: dict, metrics: dict, *, strong: bool, finished: bool, minutes: float) -> None:
        cfg, run, parts = self.cfg, self.run, self.parts
        record = {"epoch": run.epoch + 1, "step": parts.scheduler.last_epoch, "minutes": minutes, **losses, **metrics}
        record.update(lr=parts.optimizer.param_groups[0]["lr"], strong_aug=strong, partial=not finished)
        run.history.append(record)
        if finished:
            run.epoch, run.batch = run.epoch + 1, 0
        improved = metrics["AP"] > run.best_ap
        run.best_ap = max(run.best_ap, metrics["AP"])
        self.save(self.last)
        if improved:
            self.save(self.best)
        if self.dist.is_main:
            self.say(format_row(record))
            write_history(run.history, cfg.out)
            plot_history(run.history, cfg.out / "training.png", title=f"rtdetr-train {cfg.preset} on {cfg.data}")


def _train(cfg: TrainConfig, on_step: Callable[[int, int], None] | None, log: Callable[[str], None]) -> FitResult:
    deadline = time.monotonic() + cfg.minutes * 60 if cfg.minutes else None
    started = time.monotonic()
    dist_info = setup_distributed(cfg.device)
    say = log if dist_info.is_main else _quiet
    train_set, val_set = load_data(cfg, dist_info)
    if dist_info.is_main:
        _prepare_out(cfg)
    if cfg.batch % dist_info.world:
        raise ValueError(f"--batch {cfg.batch} does not divide among {dist_info.world} processes")
    if dist_info.device.type == "cpu" and (cfg.threads or "OMP_NUM_THREADS" not in os.environ):
        torch.set_num_threads(cfg.threads or _free_cores(cfg.workers, dist_info.world))
    parts = _build_parts(cfg, dist_info, train_set.num_classes, say)
    run = _restore(cfg, parts, train_set, dist_info.rank, say)
    loop = _EpochLoop(cfg, dist_info, parts, run, (train_set, val_set), on_step=on_step, say=say)
    say(_describe(cfg, train_set, val_set, dist_info, parts.model))
    say(format_header())
    stopped = False
    while run.epoch < cfg.epochs and not stopped:
        stopped = loop.epoch(deadline, started)
    best, last = loop.best, loop.last
    say(f"best AP {run.best_ap:.3f} -> {best}; last -> {last}; log: {cfg.out / 'history.csv'}, plot: training.png")
    return FitResult(cfg.out, last, best, run.history[-1], run.history, parts.scheduler.last_epoch, stopped)


def _quiet(message: str) -> None:
    pass


def load_data(cfg: TrainConfig, dist_info: Distributed | None = None) -> tuple[CocoSet, CocoSet]:
    """The validated train and val sets of ``cfg.data`` (generating the synthetic set first, rank 0 first).

    Raises:
        FileNotFoundError, ValueError: see ``load_coco`` and ``find_coco_split``; train and val must share categories.
    """
    if str(cfg.data) == "synthetic":
        is_main = dist_info is None or dist_info.is_main
        if not is_main:
            dist_info.barrier()
        paths = ensure_synthetic(config=SyntheticConfig(num_train=cfg.synthetic_images))
        if is_main and dist_info is not None:
            dist_info.barrier()
        splits = [(paths.train_annotations, paths.train_images), (paths.val_annotations, paths.val_images)]
    else:
        splits = [find_coco_split(Path(cfg.data), split) for split in ("train", "val")]
    train_set, val_set = (load_coco(annotations, images) for annotations, images in splits)
    if train_set.category_ids != val_set.category_ids:
        raise ValueError(
            f"train and val categories differ: {list(train_set.category_ids)} in {train_set.annotation_file}, "
            f"{list(val_set.category_ids)} in {val_set.annotation_file}"
        )
    return train_set, val_set


def _prepare_out(cfg: TrainConfig) -> None:
    """Check that ``cfg.out`` is writable and holds no other run's checkpoints (unless resuming or overwriting)."""
    try:
        cfg.out.mkdir(parents=True, exist_ok=True)
        probe = cfg.out / ".rtdetr-train-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"output folder {cfg.out} is not writable ({exc.strerror or exc})") from None
    for partial in [*cfg.out.glob(".last.pth.*.partial"), *cfg.out.glob(".best.pth.*.partial")]:
        partial.unlink(missing_ok=True)  # left by a run killed while writing; the checkpoint itself is intact
    existing = [p.name for p in (cfg.out / "last.pth", cfg.out / "best.pth") if p.exists()]
    if existing and cfg.resume is None and not cfg.overwrite:
        raise FileExistsError(
            f"{cfg.out} already holds {', '.join(existing)}; pass --resume to continue that run, "
            "--overwrite to replace it, or another --out"
        )


def _loader(dataset: CocoDetection, cfg: TrainConfig, dist_info: Distributed, *, shuffle: bool) -> DataLoader:
    batch = cfg.batch // dist_info.world
    sampler = EpochSampler(
        len(dataset), batch=batch, rank=dist_info.rank, world=dist_info.world, seed=cfg.seed, shuffle=shuffle
    )
    # An own generator keeps the loader from drawing its worker seeds from the global RNG, which resume restores.
    return DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        num_workers=cfg.workers,
        collate_fn=collate,
        pin_memory=dist_info.device.type == "cuda",
        generator=torch.Generator().manual_seed(cfg.seed),
    )


def _free_cores(workers: int, world: int) -> int:
    """This process's share of the usable cores, less one per loader worker; at least 1 (used unless
    ``--threads`` or ``OMP_NUM_THREADS`` says otherwise)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // world - workers)


def _strong_epoch(cfg: TrainConfig, epoch: int, deadline: float | None, epoch_seconds: list[float]) -> bool:
    """Dynamic augmentation: strong ops until ``stop_epoch``, or until the budget only fits the clean epochs."""
    if epoch >= cfg.resolved_stop_epoch:
        return False
    if deadline is None or not epoch_seconds:
        return True
    clean_epochs = cfg.epochs - cfg.resolved_stop_epoch
    return deadline - time.monotonic() > clean_epochs * statistics.mean(epoch_seconds)


def _describe(cfg: TrainConfig, train: CocoSet, val: CocoSet, dist_info: Distributed, model: torch.nn.Module) -> str:
    params = sum(p.numel() for p in model.parameters()) / 1e6
    processes = f" x {dist_info.world} processes" if dist_info.world > 1 else ""
    budget = f", budget {cfg.minutes:g} min" if cfg.minutes else ""
    stop = cfg.resolved_stop_epoch
    extra = " and multi-scale" if cfg.multiscale else ""
    augmentation = f"strong augmentation{extra} in the first {stop}" if stop else "no strong augmentation"
    threads = f", {torch.get_num_threads()} torch thread(s)" if dist_info.device.type == "cpu" else ""
    return (
        f"rtdetr-train: {cfg.preset} ({params:.1f} M params, {cfg.sampling} sampling) at {cfg.input_size[0]}x"
        f"{cfg.input_size[1]} on {dist_info.device}{processes}; {len(train.images)} train / {len(val.images)} val "
        f"images, {train.num_classes} classes; {cfg.epochs} epoch(s), {augmentation}"
        f"{budget}, batch {cfg.batch}, lr {cfg.lr:g}, backbone lr {cfg.resolved_backbone_lr:g}"
        f"{threads}"
    )
