"""transformers ``save_pretrained`` folders of ``RTDetrV2ForObjectDetection`` with random weights, for the tests.

The configurations are built the way transformers' own conversion script (``convert_rt_detr_v2_weights_to_hf.py``)
builds the released ``PekingU/rtdetr_v2_*`` checkpoints: ``RTDetrV2Config`` defaults plus the few sizes that differ
per model. So r18vd/r34vd keep transformers' default frozen backbone norms, and r50vd_m keeps all 6 decoder layers
(transformers has no ``eval_idx``). Weights are randomised on the transformers model itself, independently of this
package, so that every tensor matters: N(0, 0.02^2) noise on everything but the norms, norm affines in U(0.5, 1.5)
and BatchNorm statistics calibrated on a random image (activations stay O(1) through the deep backbones).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import RTDetrResNetConfig, RTDetrV2Config, RTDetrV2ForObjectDetection
from transformers.models.rt_detr_v2.modeling_rt_detr_v2 import RTDetrV2FrozenBatchNorm2d

__all__ = ["OFFICIAL_SIZES", "TINY_CLASSES", "official_hf_config", "randomize_hf_", "save_hf_folder", "tiny_hf_config"]

OFFICIAL_SIZES = ("r18vd", "r34vd", "r50vd_m", "r50vd", "r101vd")
TINY_CLASSES = ("cat", "dog", "bird")

# transformers' conversion script: RTDetrV2Config() and, per model, these changes.
_BASIC = {"hidden_sizes": [64, 128, 256, 512], "layer_type": "basic"}
_BACKBONES = {
    "r18vd": {**_BASIC, "depths": [2, 2, 2, 2]},
    "r34vd": {**_BASIC, "depths": [3, 4, 6, 3]},
    "r50vd_m": {},
    "r50vd": {},
    "r101vd": {"depths": [3, 4, 23, 3]},
}
_MODELS = {
    "r18vd": {"encoder_in_channels": [128, 256, 512], "hidden_expansion": 0.5, "decoder_layers": 3},
    "r34vd": {"encoder_in_channels": [128, 256, 512], "hidden_expansion": 0.5, "decoder_layers": 4},
    "r50vd_m": {"hidden_expansion": 0.5},
    "r50vd": {},
    "r101vd": {"encoder_ffn_dim": 2048, "encoder_hidden_dim": 384, "decoder_in_channels": [384, 384, 384]},
}


def official_hf_config(name: str, *, decoder_method: str = "default", num_labels: int = 80) -> RTDetrV2Config:
    """The ``RTDetrV2Config`` of transformers' conversion of the official ``name`` (``r18vd`` ... ``r101vd``)."""
    backbone = RTDetrResNetConfig(out_indices=[2, 3, 4], **_BACKBONES[name])
    id2label = {i: f"class{i}" for i in range(num_labels)}
    return RTDetrV2Config(backbone_config=backbone, decoder_method=decoder_method, id2label=id2label, **_MODELS[name])


def tiny_hf_config(**overrides: object) -> RTDetrV2Config:
    """A small RT-DETRv2 (ResNet-18-vd of width 16, 64-wide encoder and decoder, 2 layers, 30 queries) at 320x320.

    Not an official size (the model names it ``custom-r18vd``); ``anchor_image_size`` is set, so transformers uses
    anchors precomputed for 320x320, as the model does for its input size.
    """
    backbone = RTDetrResNetConfig(
        embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[2] * 4, layer_type="basic", out_indices=[2, 3, 4]
    )
    settings = {
        "backbone_config": backbone,
        "freeze_backbone_batch_norms": False,
        "encoder_in_channels": [32, 64, 128],
        "encoder_hidden_dim": 64,
        "d_model": 64,
        "decoder_in_channels": [64, 64, 64],
        "encoder_ffn_dim": 128,
        "decoder_ffn_dim": 128,
        "hidden_expansion": 0.5,
        "decoder_layers": 2,
        "decoder_n_points": 2,
        "num_queries": 30,
        "num_denoising": 10,
        "anchor_image_size": [320, 320],
        "id2label": dict(enumerate(TINY_CLASSES)),
    }
    return RTDetrV2Config(**{**settings, **overrides})


_NORMS = (nn.BatchNorm2d, RTDetrV2FrozenBatchNorm2d, nn.LayerNorm)


@torch.no_grad()
def randomize_hf_(model: RTDetrV2ForObjectDetection, seed: int, *, image_size: int = 320) -> RTDetrV2ForObjectDetection:
    """Give every tensor of a transformers RT-DETRv2 random, well-scaled values (in place); returns it in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, _NORMS)]
    norm_tensors = {id(t) for m in norms for t in (*m.parameters(recurse=False), *m.buffers(recurse=False))}
    done = set()
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        skip = id(tensor) in done or id(tensor) in norm_tensors or name.endswith("n_points_scale")
        if tensor.is_floating_point() and not skip:
            tensor.add_(0.02 * torch.randn(tensor.shape, generator=gen))
        done.add(id(tensor))  # the top-level heads are the decoder's: noise them once
    for m in norms:
        m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
        m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))

    def calibrate(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        var, mean = torch.var_mean(args[0].transpose(0, 1).flatten(1), dim=1)
        module.running_mean.copy_(mean + 0.1 * var.sqrt() * torch.randn(mean.shape, generator=gen))
        module.running_var.copy_(var * (0.8 + 0.45 * torch.rand(var.shape, generator=gen)) + 1e-3)

    batch_norms = [m for m in norms if not isinstance(m, nn.LayerNorm)]
    handles = [m.register_forward_pre_hook(calibrate) for m in batch_norms]
    try:
        model.eval()(pixel_values=torch.rand(1, 3, image_size, image_size, generator=gen))
    finally:
        for handle in handles:
            handle.remove()
    return model


def save_hf_folder(folder: Path, config: RTDetrV2Config, *, seed: int = 0) -> Path:
    """``RTDetrV2ForObjectDetection(config)`` with randomised weights, written by ``save_pretrained`` to ``folder``."""
    torch.manual_seed(seed)
    image_size = (config.anchor_image_size or [320])[0]
    model = randomize_hf_(RTDetrV2ForObjectDetection(config), seed, image_size=image_size)
    model.save_pretrained(folder)
    return folder


def match_queries(
    logits: torch.Tensor, boxes: torch.Tensor, ref_logits: torch.Tensor, ref_boxes: torch.Tensor
) -> dict[str, float]:
    """Compare two models' raw predictions query by query, up to the order of the queries.

    transformers' float64 AIFI position embedding (float32 here) can swap near-tied queries in the top-k query
    selection; the queries are then the same predictions in another order, which the post-processing (a top-k
    over all queries and classes) does not see. Each query of ``logits [Q, C]``, ``boxes [Q, 4]`` is matched to
    the reference query it is closest to (max abs difference over logits and boxes); the matching must be one to one.

    Returns:
        ``logits`` and ``boxes``: max abs differences of the matched pairs; ``moved``: queries matched elsewhere.
    """
    ours = torch.cat([logits, boxes], dim=-1)
    theirs = torch.cat([ref_logits, ref_boxes], dim=-1)
    match = (ours[:, None] - theirs[None]).abs().amax(-1).argmin(1)
    assert len(set(match.tolist())) == len(match), "the two models predict different sets of queries"
    return {
        "logits": (logits - ref_logits[match]).abs().max().item(),
        "boxes": (boxes - ref_boxes[match]).abs().max().item(),
        "moved": int((match != torch.arange(len(match))).sum()),
    }


def match_detections(
    detections: tuple[np.ndarray, np.ndarray, np.ndarray],
    reference: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    image_size: tuple[int, int],
    atol: float,
) -> dict[str, float]:
    """Compare two post-processed top-k lists (``labels [K]``, ``boxes [K, 4]`` xyxy pixels, ``scores [K]``).

    Scores are sorted, so they are compared position by position. A detection is the same as the reference's at
    its rank, or, where scores within ``atol`` of each other swapped places, as a reference detection of the same
    class and score within ``atol`` (one to one). Boxes are compared relative to the image, ``(width, height)``.
    A detection may be missing only at the end of the list, where the k-th and (k+1)-th scores tie.

    Returns:
        ``scores``, ``boxes``: max differences of matched detections (boxes as a fraction of the image size);
        ``swapped``: detections found at another rank; ``cut``: detections past the reference's k-th at a tie.
    """
    labels, boxes, scores = detections
    ref_labels, ref_boxes, ref_scores = reference
    scale = np.array(image_size * 2, dtype=np.float64)
    taken: set[int] = set()
    box_diffs, swapped, cut = [0.0], 0, 0
    for k in range(len(scores)):
        candidates = [k] if k not in taken else []
        candidates += [j for j in np.flatnonzero(np.abs(ref_scores - scores[k]) <= atol) if j != k and j not in taken]
        fits = [j for j in candidates if ref_labels[j] == labels[k]]
        diffs = [float(np.abs((boxes[k] - ref_boxes[j]) / scale).max()) for j in fits]
        if diffs and min(diffs) <= atol:
            j = fits[int(np.argmin(diffs))]
            taken.add(j)
            box_diffs.append(min(diffs))
            swapped += int(j != k)
        elif abs(scores[k] - ref_scores[-1]) <= atol:
            cut += 1
        else:
            raise AssertionError(
                f"detection {k} (label {labels[k]}, score {scores[k]:.6f}, box {boxes[k].round(2).tolist()}) is not "
                f"in the reference (at rank {k}: label {ref_labels[k]}, score {ref_scores[k]:.6f}, "
                f"box {ref_boxes[k].round(2).tolist()})"
            )
    return {
        "scores": float(np.abs(scores - ref_scores).max()),
        "boxes": max(box_diffs),
        "swapped": swapped,
        "cut": cut,
    }


def detection_deviation(
    detections: tuple[np.ndarray, np.ndarray, np.ndarray],
    reference: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    image_size: tuple[int, int],
) -> float:
    """How far the farthest detection is from the reference, order aside.

    A detection's distance is the smallest max(score difference, box difference relative to the image) to a
    reference detection of its class, or how far its score lies above the reference's last score (the
    reference may have ranked it past its top-k).
    """
    labels, boxes, scores = detections
    ref_labels, ref_boxes, ref_scores = reference
    scale = np.array(image_size * 2, dtype=np.float64)
    worst = 0.0
    for k in range(len(scores)):
        same = ref_labels == labels[k]
        box = np.abs((ref_boxes[same] - boxes[k]) / scale).max(-1)
        distances = np.maximum(np.abs(ref_scores[same] - scores[k]), box)
        worst = max(worst, float(min(distances.min(initial=np.inf), max(0.0, scores[k] - ref_scores.min()))))
    return worst
