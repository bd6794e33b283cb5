"""Tensor names of transformers' ``RTDetrV2ForObjectDetection`` and the official RT-DETRv2 keys they map to.

A rule pairs a transformers key template with the official one; each ``{field}`` stands for the patterns of
``_FIELDS`` on each side. ``save_pretrained`` writes transformers' legacy names (4.x and 5.x alike:
``model.encoder.encoder.0...``, ``fc1``, ``out_proj``); 5.x's in-memory spellings (``aifi``, ``mlp.fc1``,
``o_proj``) are brought to them first. Each self-attention's separate q/k/v projections are stacked into the
official ``in_proj_weight``/``in_proj_bias``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch

from ..errors import CheckpointError

__all__ = ["GEOMETRY_KEYS", "check_tensors", "hf_name", "hf_to_official_state_dict"]

# Buffers of the model with no transformers counterpart: anchors for the eval size, recomputed from the config.
GEOMETRY_KEYS = ("decoder.anchors", "decoder.valid_mask")

_BN = "weight|bias|running_mean|running_var|num_batches_tracked"
_FIELDS: dict[str, tuple[str, str]] = {  # field: (transformers pattern, official pattern)
    "i": (r"\d+", r"\d+"),
    "j": (r"\d+", r"\d+"),
    "k": (r"\d+", r"\d+"),
    "p": ("weight|bias", "weight|bias"),
    "bn": (_BN, _BN),
    "stem": ("[012]", "[123]"),
    "branch": ("[012]", "[abc]"),
    "qkv": ("[qkv]", ""),  # transformers only: the official in_proj stacks q, k and v
    "conv": ("lateral_convs|downsample_convs",) * 2,
    "csp": ("fpn_blocks|pan_blocks",) * 2,
    "attn": ("sampling_offsets|attention_weights|value_proj|output_proj",) * 2,
}
_TO_OFFICIAL: dict[str, Callable[[str], str]] = {"stem": lambda v: str(int(v) + 1), "branch": lambda v: "abc"[int(v)]}
_TO_HF: dict[str, Callable[[str], str]] = {"stem": lambda v: str(int(v) - 1), "branch": lambda v: str("abc".index(v))}

_STEM, _STAGE = "model.backbone.model.embedder.embedder.{stem}.", "model.backbone.model.encoder.stages.{i}.layers.{j}."
_BLOCK = "backbone.res_layers.{i}.blocks.{j}."
_AIFI, _AIFI_OURS = "model.encoder.encoder.{i}.layers.{j}.", "encoder.encoder.{i}.layers.{j}."
_CSP, _CSP_OURS = "model.encoder.{csp}.{i}.", "encoder.{csp}.{i}."
_LAYER, _LAYER_OURS = "model.decoder.layers.{i}.", "decoder.decoder.layers.{i}."
_TEMPLATES: tuple[tuple[str, str], ...] = (
    # backbone: PResNet-vd
    (_STEM + "convolution.weight", "backbone.conv1.conv1_{stem}.conv.weight"),
    (_STEM + "normalization.{bn}", "backbone.conv1.conv1_{stem}.norm.{bn}"),
    (_STAGE + "layer.{branch}.convolution.weight", _BLOCK + "branch2{branch}.conv.weight"),
    (_STAGE + "layer.{branch}.normalization.{bn}", _BLOCK + "branch2{branch}.norm.{bn}"),
    (_STAGE + "shortcut.1.convolution.weight", _BLOCK + "short.conv.conv.weight"),  # after the average pool
    (_STAGE + "shortcut.1.normalization.{bn}", _BLOCK + "short.conv.norm.{bn}"),
    (_STAGE + "shortcut.convolution.weight", _BLOCK + "short.conv.weight"),
    (_STAGE + "shortcut.normalization.{bn}", _BLOCK + "short.norm.{bn}"),
    # hybrid encoder
    ("model.encoder_input_proj.{i}.0.weight", "encoder.input_proj.{i}.conv.weight"),
    ("model.encoder_input_proj.{i}.1.{bn}", "encoder.input_proj.{i}.norm.{bn}"),
    (_AIFI + "self_attn.{qkv}_proj.{p}", _AIFI_OURS + "self_attn.in_proj_{p}"),
    (_AIFI + "self_attn.out_proj.{p}", _AIFI_OURS + "self_attn.out_proj.{p}"),
    (_AIFI + "fc{k}.{p}", _AIFI_OURS + "linear{k}.{p}"),
    (_AIFI + "self_attn_layer_norm.{p}", _AIFI_OURS + "norm1.{p}"),
    (_AIFI + "final_layer_norm.{p}", _AIFI_OURS + "norm2.{p}"),
    ("model.encoder.{conv}.{i}.conv.weight", "encoder.{conv}.{i}.conv.weight"),
    ("model.encoder.{conv}.{i}.norm.{bn}", "encoder.{conv}.{i}.norm.{bn}"),
    (_CSP + "conv{j}.conv.weight", _CSP_OURS + "conv{j}.conv.weight"),
    (_CSP + "conv{j}.norm.{bn}", _CSP_OURS + "conv{j}.norm.{bn}"),
    (_CSP + "bottlenecks.{j}.conv{k}.conv.weight", _CSP_OURS + "bottlenecks.{j}.conv{k}.conv.weight"),
    (_CSP + "bottlenecks.{j}.conv{k}.norm.{bn}", _CSP_OURS + "bottlenecks.{j}.conv{k}.norm.{bn}"),
    # decoder: query selection
    ("model.decoder_input_proj.{i}.0.weight", "decoder.input_proj.{i}.conv.weight"),
    ("model.decoder_input_proj.{i}.1.{bn}", "decoder.input_proj.{i}.norm.{bn}"),
    ("model.enc_output.0.{p}", "decoder.enc_output.proj.{p}"),
    ("model.enc_output.1.{p}", "decoder.enc_output.norm.{p}"),
    ("model.enc_score_head.{p}", "decoder.enc_score_head.{p}"),
    ("model.enc_bbox_head.layers.{i}.{p}", "decoder.enc_bbox_head.layers.{i}.{p}"),
    ("model.denoising_class_embed.weight", "decoder.denoising_class_embed.weight"),
    ("model.decoder.query_pos_head.layers.{i}.{p}", "decoder.query_pos_head.layers.{i}.{p}"),
    # decoder layers and their heads
    (_LAYER + "self_attn.{qkv}_proj.{p}", _LAYER_OURS + "self_attn.in_proj_{p}"),
    (_LAYER + "self_attn.out_proj.{p}", _LAYER_OURS + "self_attn.out_proj.{p}"),
    (_LAYER + "encoder_attn.{attn}.{p}", _LAYER_OURS + "cross_attn.{attn}.{p}"),
    (_LAYER + "encoder_attn.n_points_scale", _LAYER_OURS + "cross_attn.num_points_scale"),
    (_LAYER + "self_attn_layer_norm.{p}", _LAYER_OURS + "norm1.{p}"),
    (_LAYER + "encoder_attn_layer_norm.{p}", _LAYER_OURS + "norm2.{p}"),
    (_LAYER + "final_layer_norm.{p}", _LAYER_OURS + "norm3.{p}"),
    (_LAYER + "fc{k}.{p}", _LAYER_OURS + "linear{k}.{p}"),
    ("model.decoder.class_embed.{i}.{p}", "decoder.dec_score_head.{i}.{p}"),
    ("model.decoder.bbox_embed.{i}.layers.{j}.{p}", "decoder.dec_bbox_head.{i}.layers.{j}.{p}"),
)
# transformers 5.x in-memory spellings -> the saved ones.
_SPELLINGS = (
    (re.compile(r"^model\.encoder\.aifi\.(\d+)\."), r"model.encoder.encoder.\1."),
    (re.compile(r"\.mlp\.fc([12])\."), r".fc\1."),
    (re.compile(r"\.self_attn\.o_proj\."), ".self_attn.out_proj."),
)


def _compile(template: str, side: int) -> re.Pattern[str]:
    """The full-match regex of one side (0: transformers, 1: official) of a template, a named group per field."""
    parts = re.split(r"\{(\w+)\}", template)
    return re.compile("".join(f"(?P<{p}>{_FIELDS[p][side]})" if n % 2 else re.escape(p) for n, p in enumerate(parts)))


# (transformers template, official template, transformers regex, official regex)
_RULES = [(hf, ours, _compile(hf, 0), _compile(ours, 1)) for hf, ours in _TEMPLATES]


def _saved_spelling(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys in the saved spelling; the top-level head copies (tied to ``model.decoder``'s) only where those lack."""
    out = {}
    for key, tensor in tensors.items():
        for pattern, spelling in _SPELLINGS:
            key = pattern.sub(spelling, key)
        out[key] = tensor
    for key in [k for k in out if k.startswith(("class_embed.", "bbox_embed."))]:
        out.setdefault(f"model.decoder.{key}", out.pop(key))
    return out


def hf_to_official_state_dict(
    tensors: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
    """Rename transformers' ``RTDetrV2ForObjectDetection`` tensors to the official keys.

    Where both the top-level ``class_embed``/``bbox_embed`` and ``model.decoder``'s copies are present, the
    decoder's, which transformers' forward uses, are taken. A q/k/v triple missing a part is left out.

    Returns:
        The official state dict, the transformers name of each of its keys (``...{q,k,v}_proj...`` for stacked
        ones), and the transformers keys that no rule maps.
    """
    pieces: dict[str, dict[str, torch.Tensor]] = {}
    origin: dict[str, str] = {}
    unmapped = []
    for key, tensor in _saved_spelling(tensors).items():
        found = next(((ours, m) for _, ours, hf_re, _ in _RULES if (m := hf_re.fullmatch(key))), None)
        if found is None:
            unmapped.append(key)
            continue
        template, match = found
        groups = match.groupdict()
        part = groups.pop("qkv", "")
        name = template.format(**{k: _TO_OFFICIAL.get(k, str)(v) for k, v in groups.items()})
        pieces.setdefault(name, {})[part] = tensor
        origin[name] = key.replace(f".{part}_proj.", ".{q,k,v}_proj.") if part else key
    state_dict = {}
    for name, parts in pieces.items():
        if set(parts) == {""}:
            state_dict[name] = parts[""]
        elif len(parts) == 3:
            state_dict[name] = torch.cat([parts[c] for c in "qkv"])
    return state_dict, origin, unmapped


def hf_name(official_key: str) -> str:
    """The transformers name of an official key (q/k/v triples as ``{q,k,v}``; unknown keys unchanged)."""
    for hf, _, _, official_re in _RULES:
        if match := official_re.fullmatch(official_key):
            return hf.format(qkv="{q,k,v}", **{k: _TO_HF.get(k, str)(v) for k, v in match.groupdict().items()})
    return official_key


def check_tensors(
    expected: Mapping[str, torch.Tensor],
    state_dict: Mapping[str, torch.Tensor],
    origin: Mapping[str, str],
    unmapped: list[str],
    *,
    source: object,
) -> None:
    """Raise ``CheckpointError`` naming the first few missing, unexpected and misshapen tensors, if any.

    Args:
        expected: the state dict of the model the config describes (shapes only; the meta device will do).
        state_dict, origin, unmapped: what ``hf_to_official_state_dict`` returned.
        source: the folder or file, for the message.
    """
    counted = [k for k in expected if k not in GEOMETRY_KEYS and not k.endswith("num_batches_tracked")]
    missing = [hf_name(k) for k in counted if k not in state_dict]
    unexpected = unmapped + [origin[k] for k in state_dict if k not in expected and "num_batches" not in k]
    shapes = [
        f"{origin[k]} {list(state_dict[k].shape)} vs {list(expected[k].shape)}"
        for k in counted
        if k in state_dict and state_dict[k].shape != expected[k].shape
    ]
    problems = [
        f"{what} ({len(names)}): {', '.join(names[:3])}{', ...' if len(names) > 3 else ''}"
        for what, names in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes))
        if names
    ]
    if problems:
        raise CheckpointError(f"{source}: tensors do not fit its config.json: " + "; ".join(problems))
