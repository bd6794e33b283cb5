"""One training epoch and one evaluation: the two functions the trainer loops over."""

from __future__ import annotations

import math
import random
import time
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from torchvision.ops import box_convert
from tqdm import tqdm

from ..coco import coco_box_map
from ..models.postprocess import postprocess
from .criterion import MAIN_TERMS, SetCriterion
from .distributed import Distributed, all_gather, broadcast
from .ema import ModelEMA
from .transforms import resize_batch

__all__ = ["train_one_epoch", "evaluate"]


def train_one_epoch(
    model: nn.Module,
    criterion: SetCriterion,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    ema: ModelEMA,
    scaler: torch.amp.GradScaler,
    dist_info: Distributed,
    sizes: Sequence[tuple[int, int]] = (),
    seed: int = 0,
    first_batch: int = 0,
    clip_max_norm: float = 0.1,
    deadline: float | None = None,
    on_step: Callable[[int], None] | None = None,
    desc: str = "",
    progress: bool = True,
) -> tuple[dict[str, float], bool]:
    """Train over ``loader`` once (or until ``deadline``).

    Args:
        model: the model in training mode, possibly wrapped in DistributedDataParallel.
        loader: yields ``(images [B, 3, H, W] in [0, 1], targets)``; targets carry ``labels`` and cxcywh ``boxes``.
        scheduler: per-step schedule; its ``last_epoch`` is the global step.
        ema: averaged weights, updated after every step.
        scaler: loss scaler (disabled unless AMP on CUDA).
        sizes: multi-scale batch sizes ``(height, width)``, one drawn per step from ``(seed, step)``; empty: off.
        first_batch: batches of this epoch done before (when resuming mid-epoch); the loader skips them.
        clip_max_norm: gradient-norm clipping (0: off).
        deadline: ``time.monotonic()`` value after which the epoch stops early.
        on_step: called with the number of batches done in this epoch after each step (checkpointing, tests).

    Returns:
        Mean loss terms over the steps run (``loss`` total, ``loss_vfl``, ``loss_bbox``, ``loss_giou`` of the
        final layer), averaged over processes; and whether the deadline stopped the epoch.

    Raises:
        FloatingPointError: the loss became NaN or infinite.
    """
    model.train()
    criterion.train()
    device = dist_info.device
    sums = dict.fromkeys(("loss", *MAIN_TERMS), 0.0)
    steps, stopped = 0, False
    bar = tqdm(loader, desc=desc, disable=None if progress else True, leave=False, dynamic_ncols=True, unit="batch")
    for batch_index, (images, targets) in enumerate(bar, start=first_batch + 1):
        step = scheduler.last_epoch
        images = images.to(device, non_blocking=True)
        targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
        if sizes:
            images = resize_batch(images, random.Random(seed * 100_003 + step).choice(sizes))
        terms = _optimizer_step(
            model, criterion, images, targets, optimizer, scaler=scaler, clip_max_norm=clip_max_norm, step=step
        )
        with warnings.catch_warnings():
            # The loss scaler skips steps whose gradients overflowed; the schedule still counts every batch.
            warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)`", UserWarning)
            scheduler.step()
        ema.update(model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model)
        steps += 1
        for name, value in terms.items():
            sums[name] += value
        postfix = {"loss": f"{terms['loss']:.3f}", "lr": f"{optimizer.param_groups[0]['lr']:.2e}"}
        if deadline is not None:
            left = int(max(deadline - time.monotonic(), 0))
            postfix["budget left"] = f"{left // 60}:{left % 60:02d}"
        bar.set_postfix(postfix, refresh=False)
        if on_step is not None:
            on_step(batch_index)
        if deadline is not None and _any_process(time.monotonic() >= deadline, dist_info):
            stopped = True
            break
    bar.close()
    totals = torch.tensor([steps, *sums.values()], dtype=torch.float64)
    if dist_info.world > 1:
        totals = sum(all_gather(totals, dist_info.world))
    means = {name: (totals[i + 1] / max(totals[0], 1)).item() for i, name in enumerate(sums)}
    return means, stopped


def _optimizer_step(
    model: nn.Module,
    criterion: SetCriterion,
    images: torch.Tensor,
    targets: list[dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    *,
    scaler: torch.amp.GradScaler,
    clip_max_norm: float,
    step: int,
) -> dict[str, float]:
    """Forward, loss, backward and one optimizer step; returns ``loss`` and the final layer's main terms.

    Raises:
        FloatingPointError: the loss became NaN or infinite.
    """
    device_type = images.device.type
    with torch.autocast(device_type=device_type, dtype=torch.float16, enabled=scaler.is_enabled()):
        outputs = model(images, targets)
    with torch.autocast(device_type=device_type, enabled=False):
        terms = criterion(outputs, targets)
    loss = sum(terms.values())
    loss_value = loss.item()
    if not math.isfinite(loss_value):
        raise FloatingPointError(
            f"loss is {loss_value} at step {step}: training diverged; lower --lr or check the annotations"
        )
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip_max_norm > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_max_norm)
    scaler.step(optimizer)
    scaler.update()
    return {"loss": loss_value, **{name: terms[name].item() for name in MAIN_TERMS}}


def _any_process(flag: bool, dist_info: Distributed) -> bool:
    """True when ``flag`` holds in any process, so that all processes stop at the same step."""
    if dist_info.world == 1:
        return flag
    value = torch.tensor([float(flag)], device=dist_info.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    ground_truth: dict,
    *,
    category_ids: Sequence[int],
    dist_info: Distributed,
    topk: int = 300,
    desc: str = "eval",
    progress: bool = True,
) -> tuple[dict[str, float], list[dict]]:
    """COCO box mAP of ``model`` (typically the EMA weights) on the images of ``loader``.

    Each process predicts its share of the images; rank 0 gathers the detections, scores them with
    faster-coco-eval and shares the metrics.

    Args:
        model: a detector returning ``pred_logits [B, Q, C]`` and ``pred_boxes [B, Q, 4]`` cxcywh in [0, 1].
        loader: evaluation batches; targets carry ``image_id`` and ``orig_size`` (width, height).
        ground_truth: the parsed COCO annotation file of those images.
        category_ids: original category id of each contiguous label.
        topk: detections per image (NMS-free top-k over queries x classes, as deployed).

    Returns:
        The metrics (``AP``, ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl``, ``AR100``) and, on rank 0, every
        COCO results entry (bbox x, y, w, h in original pixels, original category ids); elsewhere an empty list.
    """
    was_training = model.training
    model.eval()
    device = dist_info.device
    results: list[dict] = []
    for images, targets in tqdm(loader, desc=desc, disable=None if progress else True, leave=False, dynamic_ncols=True):
        outputs = model(images.to(device))
        orig_sizes_wh = torch.stack([t["orig_size"] for t in targets]).to(device)
        labels, boxes_xyxy, scores = postprocess(
            outputs["pred_logits"], outputs["pred_boxes"], orig_sizes_wh, topk=topk
        )
        boxes_xywh = box_convert(boxes_xyxy, "xyxy", "xywh")
        for target, image_labels, image_boxes, image_scores in zip(
            targets, labels.tolist(), boxes_xywh.tolist(), scores.tolist(), strict=True
        ):
            image_id = int(target["image_id"])
            results += [
                {"image_id": image_id, "category_id": category_ids[label], "bbox": box, "score": score}
                for label, box, score in zip(image_labels, image_boxes, image_scores, strict=True)
            ]
    model.train(was_training)
    gathered = all_gather(results, dist_info.world)
    metrics = None
    if dist_info.is_main:
        results = [entry for part in gathered for entry in part]
        metrics = coco_box_map(ground_truth, results)
    return broadcast(metrics, dist_info.world), results if dist_info.is_main else []
