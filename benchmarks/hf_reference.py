"""Hugging Face transformers' RT-DETRv2 port as an independent reference for our model.

``transformers.RTDetrV2ForObjectDetection`` is a port of the official ``rtdetrv2_pytorch`` code that its
authors verified against the released checkpoints. This module builds the HF configuration that matches one
of our presets and renames an official-format state dict (ours uses the official keys) into HF's layout, so
the same weights can be run through both implementations.

Where HF's port departs from the official model, the configuration below steers around it (each case is
noted where it is handled):

* ``eval_size`` is left ``None``: with ``eval_size`` set, HF's ``RTDetrV2AIFILayer.forward`` passes
  ``pos_embed = None`` in eval mode, i.e. it drops the position embedding of the AIFI layer altogether,
  whereas the official encoder uses a precomputed embedding. With ``None`` HF computes the embedding on
  the fly (in float64, cast to float32). Its layout ``[sin_h, cos_h, sin_w, cos_w]`` over row-major (h, w)
  equals the official ``[sin_w', cos_w', sin_h', cos_h']`` over ``meshgrid(w, h, indexing="ij")`` only for
  square maps, so parity holds for square inputs only.
* ``anchor_image_size`` is left ``None``: HF then generates the anchors per forward (it marks invalid
  anchors with ``finfo.max`` instead of the official ``inf``; both saturate the sigmoid to 1). Our
  ``decoder.anchors`` and ``decoder.valid_mask`` buffers therefore have no HF counterpart and are dropped.
* HF has no ``eval_idx``: its decoder always returns the last layer. For presets that evaluate an earlier
  layer (``r50vd_m``: ``eval_idx=2`` of 6) the HF model gets ``eval_idx + 1`` layers and only those layers'
  weights. (HF's own conversion of ``rtdetr_v2_r50vd_m`` keeps all 6 layers and thus evaluates layer 6,
  not the official layer 3.)
* HF uses one point count for every level (``decoder_n_points``); per-level counts (our ``tiny`` preset)
  cannot be expressed and raise.
* HF hard-codes 3 RepVGG blocks per CSP block (``depth_mult`` must be 1).
* HF computes the AIFI position embedding in float64, the official code in float32 (up to ~1e-6 apart);
  ``use_official_position_embedding`` swaps in the official computation for bit-exact comparisons.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping

import torch
from transformers import RTDetrResNetConfig, RTDetrV2Config

from rtdetr_deploy.models.backbone import BLOCKS_PER_STAGE
from rtdetr_deploy.models.hybrid_encoder import sincos_position_embedding
from rtdetr_deploy.models.presets import ModelConfig, get_preset

__all__ = [
    "DROPPED_KEYS",
    "HF_SAMPLING",
    "ArchitectureMismatch",
    "hf_config",
    "load_official_into_hf",
    "num_eval_layers",
    "official_to_hf_state_dict",
    "recording_hf_discrete_decisions",
    "use_official_position_embedding",
]

# Our sampling method -> HF's ``decoder_method``.
HF_SAMPLING = {"bilinear": "default", "discrete": "discrete"}

# Official buffers with no HF counterpart (HF regenerates the anchors on every forward).
DROPPED_KEYS = ("decoder.anchors", "decoder.valid_mask")


class ArchitectureMismatch(ValueError):
    """The official-format weights do not fit the HF model's shapes (the architectures differ)."""


def num_eval_layers(preset: ModelConfig) -> int:
    """Decoder layers that contribute to the inference output: ``eval_idx + 1``."""
    return preset.eval_idx + 1 if preset.eval_idx >= 0 else preset.num_decoder_layers + preset.eval_idx + 1


def hf_config(preset: ModelConfig | str, num_classes: int, *, sampling: str = "bilinear") -> RTDetrV2Config:
    """The ``RTDetrV2Config`` of the HF model equal (at inference) to our model built from ``preset``.

    Args:
        preset: one of our presets (or its name).
        num_classes: classes of the detection heads.
        sampling: our sampling method, ``"bilinear"`` (HF ``"default"``) or ``"discrete"``.
    """
    if isinstance(preset, str):
        preset = get_preset(preset)
    if sampling not in HF_SAMPLING:
        raise ValueError(f"unknown sampling {sampling!r}; choose from {', '.join(HF_SAMPLING)}")
    if len(set(preset.num_points)) != 1:
        raise ValueError(f"HF's RT-DETRv2 uses one point count for all levels; preset has {preset.num_points}")
    if round(3 * preset.depth_mult) != 3:
        raise ValueError(f"HF's CSPRepLayer has 3 RepVGG blocks; preset has depth_mult {preset.depth_mult}")
    if preset.feat_strides != (8, 16, 32):
        raise ValueError(f"HF's backbone returns strides 8, 16, 32; preset has {preset.feat_strides}")

    bottleneck = preset.depth >= 50
    stage_out = [preset.backbone_width * (4 if bottleneck else 1) * 2**i for i in range(4)]
    backbone = RTDetrResNetConfig(
        num_channels=3,
        embedding_size=preset.backbone_width,
        hidden_sizes=stage_out,
        depths=list(BLOCKS_PER_STAGE[preset.depth]),
        layer_type="bottleneck" if bottleneck else "basic",
        hidden_act="relu",
        downsample_in_first_stage=False,
        downsample_in_bottleneck=False,  # variant d: the stride sits on the 3x3 conv
        out_indices=[2, 3, 4],
    )
    assert tuple(stage_out[1:]) == tuple(preset.backbone_channels)
    hidden = preset.hidden_dim
    return RTDetrV2Config(
        num_labels=num_classes,
        backbone_config=backbone,
        freeze_backbone_batch_norms=preset.freeze_norm,
        layer_norm_eps=1e-5,
        batch_norm_eps=1e-5,
        # hybrid encoder
        encoder_hidden_dim=hidden,
        encoder_in_channels=list(preset.backbone_channels),
        feat_strides=list(preset.feat_strides),
        encoder_layers=1,
        encoder_ffn_dim=preset.encoder_ffn_dim,
        encoder_attention_heads=preset.num_heads,
        encode_proj_layers=[2],
        positional_encoding_temperature=10000,
        encoder_activation_function="gelu",
        activation_function="silu",
        eval_size=None,  # see the module docstring: a set eval_size makes HF drop the AIFI position embedding
        normalize_before=False,
        hidden_expansion=preset.expansion,
        dropout=0.0,
        activation_dropout=0.0,
        attention_dropout=0.0,
        # decoder
        d_model=preset.decoder_hidden_dim,  # r101vd: 384-wide encoder, 256-wide decoder (input_proj 384 -> 256)
        num_queries=preset.num_queries,
        decoder_in_channels=[hidden] * preset.num_levels,
        decoder_ffn_dim=preset.decoder_ffn_dim,
        num_feature_levels=preset.num_levels,
        decoder_n_levels=preset.num_levels,
        decoder_n_points=preset.num_points[0],
        decoder_layers=num_eval_layers(preset),  # HF has no eval_idx; see the module docstring
        decoder_attention_heads=preset.num_heads,
        decoder_activation_function="relu",
        decoder_offset_scale=0.5,
        decoder_method=HF_SAMPLING[sampling],
        num_denoising=preset.num_denoising,
        learn_initial_query=False,
        anchor_image_size=None,
        with_box_refine=True,
    )


# --------------------------------------------------------------------------------------------------------
# State-dict renaming. Each rule is a full-match regex over an official key and a function building the HF
# key(s) (with the tensor) from the match. Exactly one rule must match every key that is not dropped.
# --------------------------------------------------------------------------------------------------------

_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_Action = Callable[[re.Match, torch.Tensor], dict[str, torch.Tensor]]


def _rename(template: str) -> _Action:
    """A rule action that renames the key with ``template`` (``{1}``, ``{2}``... are the match groups)."""

    def action(m: re.Match, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        return {template.format(None, *m.groups()): tensor}

    return action


def _split_in_proj(prefix_template: str) -> _Action:
    """``nn.MultiheadAttention.in_proj_{weight,bias}`` (q, k, v stacked on dim 0) -> HF's q/k/v projections."""

    def action(m: re.Match, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        *groups, leaf = m.groups()
        prefix = prefix_template.format(None, *groups)
        if tensor.shape[0] % 3:
            raise ValueError(f"{m.string}: first dim {tensor.shape[0]} is not 3 * embed_dim")
        q, k, v = tensor.chunk(3, dim=0)
        return {f"{prefix}.{name}_proj.{leaf}": part.clone() for name, part in zip("qkv", (q, k, v), strict=True)}

    return action


def _head(template: str) -> _Action:
    """Per-layer prediction heads: HF stores them under ``model.decoder.X`` and again (tied) at the top level."""

    def action(m: re.Match, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        key = template.format(None, *m.groups())
        return {f"model.decoder.{key}": tensor, key: tensor}

    return action


_BACKBONE = "model.backbone.model"
_RULES: list[tuple[str, _Action]] = [
    # --- backbone (PResNet-vd -> RTDetrResNetBackbone) ---
    (
        r"backbone\.conv1\.conv1_([123])\.conv\.weight",
        lambda m, t: {f"{_BACKBONE}.embedder.embedder.{int(m[1]) - 1}.convolution.weight": t},
    ),
    (
        rf"backbone\.conv1\.conv1_([123])\.norm\.{_BN}",
        lambda m, t: {f"{_BACKBONE}.embedder.embedder.{int(m[1]) - 1}.normalization.{m[2]}": t},
    ),
    (
        r"backbone\.res_layers\.(\d+)\.blocks\.(\d+)\.branch2([abc])\.conv\.weight",
        lambda m, t: {
            f"{_BACKBONE}.encoder.stages.{m[1]}.layers.{m[2]}.layer.{'abc'.index(m[3])}.convolution.weight": t
        },
    ),
    (
        rf"backbone\.res_layers\.(\d+)\.blocks\.(\d+)\.branch2([abc])\.norm\.{_BN}",
        lambda m, t: {
            f"{_BACKBONE}.encoder.stages.{m[1]}.layers.{m[2]}.layer.{'abc'.index(m[3])}.normalization.{m[4]}": t
        },
    ),
    # projection shortcut with average pool (strided stages): official short = (pool, conv), HF shortcut = [pool, conv]
    (
        r"backbone\.res_layers\.(\d+)\.blocks\.(\d+)\.short\.conv\.conv\.weight",
        _rename(_BACKBONE + ".encoder.stages.{1}.layers.{2}.shortcut.1.convolution.weight"),
    ),
    (
        rf"backbone\.res_layers\.(\d+)\.blocks\.(\d+)\.short\.conv\.norm\.{_BN}",
        _rename(_BACKBONE + ".encoder.stages.{1}.layers.{2}.shortcut.1.normalization.{3}"),
    ),
    # plain 1x1 projection shortcut (first stage)
    (
        r"backbone\.res_layers\.(\d+)\.blocks\.(\d+)\.short\.conv\.weight",
        _rename(_BACKBONE + ".encoder.stages.{1}.layers.{2}.shortcut.convolution.weight"),
    ),
    (
        rf"backbone\.res_layers\.(\d+)\.blocks\.(\d+)\.short\.norm\.{_BN}",
        _rename(_BACKBONE + ".encoder.stages.{1}.layers.{2}.shortcut.normalization.{3}"),
    ),
    # --- hybrid encoder ---
    (r"encoder\.input_proj\.(\d+)\.conv\.weight", _rename("model.encoder_input_proj.{1}.0.weight")),
    (rf"encoder\.input_proj\.(\d+)\.norm\.{_BN}", _rename("model.encoder_input_proj.{1}.1.{2}")),
    (
        r"encoder\.encoder\.(\d+)\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)",
        _split_in_proj("model.encoder.aifi.{1}.layers.{2}.self_attn"),
    ),
    (
        r"encoder\.encoder\.(\d+)\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)",
        _rename("model.encoder.aifi.{1}.layers.{2}.self_attn.o_proj.{3}"),
    ),
    (
        r"encoder\.encoder\.(\d+)\.layers\.(\d+)\.linear([12])\.(weight|bias)",
        _rename("model.encoder.aifi.{1}.layers.{2}.mlp.fc{3}.{4}"),
    ),
    (
        r"encoder\.encoder\.(\d+)\.layers\.(\d+)\.norm1\.(weight|bias)",
        _rename("model.encoder.aifi.{1}.layers.{2}.self_attn_layer_norm.{3}"),
    ),
    (
        r"encoder\.encoder\.(\d+)\.layers\.(\d+)\.norm2\.(weight|bias)",
        _rename("model.encoder.aifi.{1}.layers.{2}.final_layer_norm.{3}"),
    ),
    # CCFF: same module tree and leaf names on both sides
    (r"encoder\.((?:lateral_convs|downsample_convs)\.\d+\.(?:conv\.weight|norm\.\w+))", _rename("model.encoder.{1}")),
    (
        r"encoder\.((?:fpn_blocks|pan_blocks)\.\d+\.(?:bottlenecks\.\d+\.)?conv\d\.(?:conv\.weight|norm\.\w+))",
        _rename("model.encoder.{1}"),
    ),
    # --- decoder: query selection ---
    (r"decoder\.input_proj\.(\d+)\.conv\.weight", _rename("model.decoder_input_proj.{1}.0.weight")),
    (rf"decoder\.input_proj\.(\d+)\.norm\.{_BN}", _rename("model.decoder_input_proj.{1}.1.{2}")),
    (r"decoder\.enc_output\.proj\.(weight|bias)", _rename("model.enc_output.0.{1}")),
    (r"decoder\.enc_output\.norm\.(weight|bias)", _rename("model.enc_output.1.{1}")),
    (r"decoder\.enc_score_head\.(weight|bias)", _rename("model.enc_score_head.{1}")),
    (r"decoder\.enc_bbox_head\.layers\.(\d+)\.(weight|bias)", _rename("model.enc_bbox_head.layers.{1}.{2}")),
    (r"decoder\.denoising_class_embed\.weight", _rename("model.denoising_class_embed.weight")),
    (r"decoder\.query_pos_head\.layers\.(\d+)\.(weight|bias)", _rename("model.decoder.query_pos_head.layers.{1}.{2}")),
    # --- decoder layers ---
    (
        r"decoder\.decoder\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)",
        _split_in_proj("model.decoder.layers.{1}.self_attn"),
    ),
    (
        r"decoder\.decoder\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)",
        _rename("model.decoder.layers.{1}.self_attn.o_proj.{2}"),
    ),
    (
        r"decoder\.decoder\.layers\.(\d+)\.cross_attn\.(sampling_offsets|attention_weights|value_proj|output_proj)"
        r"\.(weight|bias)",
        _rename("model.decoder.layers.{1}.encoder_attn.{2}.{3}"),
    ),
    (
        r"decoder\.decoder\.layers\.(\d+)\.cross_attn\.num_points_scale",
        _rename("model.decoder.layers.{1}.encoder_attn.n_points_scale"),
    ),
    (
        r"decoder\.decoder\.layers\.(\d+)\.norm1\.(weight|bias)",
        _rename("model.decoder.layers.{1}.self_attn_layer_norm.{2}"),
    ),
    (
        r"decoder\.decoder\.layers\.(\d+)\.norm2\.(weight|bias)",
        _rename("model.decoder.layers.{1}.encoder_attn_layer_norm.{2}"),
    ),
    (
        r"decoder\.decoder\.layers\.(\d+)\.norm3\.(weight|bias)",
        _rename("model.decoder.layers.{1}.final_layer_norm.{2}"),
    ),
    (
        r"decoder\.decoder\.layers\.(\d+)\.linear([12])\.(weight|bias)",
        _rename("model.decoder.layers.{1}.mlp.fc{2}.{3}"),
    ),
    # --- per-layer prediction heads ---
    (r"decoder\.dec_score_head\.(\d+)\.(weight|bias)", _head("class_embed.{1}.{2}")),
    (r"decoder\.dec_bbox_head\.(\d+)\.layers\.(\d+)\.(weight|bias)", _head("bbox_embed.{1}.layers.{2}.{3}")),
]
_COMPILED: list[tuple[re.Pattern, _Action]] = [(re.compile(pattern), action) for pattern, action in _RULES]

# Keys that belong to decoder layer i (the layer index is group 1).
_LAYER_KEY = re.compile(r"decoder\.(?:decoder\.layers|dec_score_head|dec_bbox_head)\.(\d+)\..*")


def official_to_hf_state_dict(
    state_dict: Mapping[str, torch.Tensor], *, num_decoder_layers: int | None = None
) -> dict[str, torch.Tensor]:
    """Rename an official RT-DETRv2 state dict to the keys of ``RTDetrV2ForObjectDetection``.

    Args:
        state_dict: official-format weights (ours, or a release checkpoint's ``ema.module``).
        num_decoder_layers: keep only decoder layers (and their heads) below this index, for an HF model built
            with fewer layers (HF has no ``eval_idx``; see :func:`hf_config`). ``None`` keeps them all.

    Every key must be mapped by exactly one rule, except the anchor buffers in ``DROPPED_KEYS`` (and, with
    ``num_decoder_layers``, the layers cut off); anything else raises ``KeyError``.
    """
    out: dict[str, torch.Tensor] = {}
    unmapped, ambiguous = [], []
    for key, tensor in state_dict.items():
        if key in DROPPED_KEYS:
            continue
        layer = _LAYER_KEY.fullmatch(key)
        if num_decoder_layers is not None and layer and int(layer[1]) >= num_decoder_layers:
            continue
        hits = [(m, action) for pattern, action in _COMPILED if (m := pattern.fullmatch(key))]
        if not hits:
            unmapped.append(key)
            continue
        if len(hits) > 1:
            ambiguous.append(key)
            continue
        m, action = hits[0]
        for new_key, new_tensor in action(m, tensor).items():
            if new_key in out:
                raise KeyError(f"two official keys map to {new_key!r} (second: {key!r})")
            out[new_key] = new_tensor
    if unmapped or ambiguous:
        raise KeyError(f"unmapped official keys: {unmapped}; keys matching several rules: {ambiguous}")
    return out


class _OfficialSinePositionEmbedding(torch.nn.Module):
    """Drop-in for HF's ``RTDetrV2SinePositionEmbedding`` computing the official float32 embedding."""

    def __init__(self, embed_dim: int, temperature: float) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.temperature = temperature

    def forward(self, width: int, height: int, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
        return sincos_position_embedding(width, height, self.embed_dim, self.temperature).to(device, dtype)


def use_official_position_embedding(hf_model: torch.nn.Module) -> None:
    """Make HF's AIFI layers use the official float32 position embedding instead of HF's float64 one.

    HF computes the (square-map-equal) embedding in float64 and casts it to float32; it differs from the
    official float32 computation by up to ~1e-6. Random weights amplify that to ~1e-5 in the encoder scores,
    enough to swap near-tied queries in the top-k selection. With the official embedding, backbone, encoder
    and query selection of HF's port and ours agree bit for bit, and the test can hold the decoder to 1e-4.
    """
    for aifi in hf_model.model.encoder.aifi:
        old = aifi.position_embedding
        aifi.position_embedding = _OfficialSinePositionEmbedding(old.embed_dim, old.temperature)


@torch.no_grad()
def load_official_into_hf(hf_model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Copy official-format weights into an ``RTDetrV2ForObjectDetection`` and check that every HF tensor got them.

    The HF model's decoder depth decides how many official decoder layers are used. Raises
    ``ArchitectureMismatch`` if keys or shapes disagree, ``AssertionError`` if a tensor does not hold the copied
    value afterwards (e.g. weights tied in HF that differ in the official model).
    """
    num_layers = len(hf_model.model.decoder.layers)
    mapped = official_to_hf_state_dict(state_dict, num_decoder_layers=num_layers)
    expected = hf_model.state_dict()
    missing, unexpected = sorted(set(expected) - set(mapped)), sorted(set(mapped) - set(expected))
    shapes = [
        f"{k}: official {tuple(mapped[k].shape)} vs HF {tuple(expected[k].shape)}"
        for k in sorted(set(mapped) & set(expected))
        if mapped[k].shape != expected[k].shape
    ]
    if missing or unexpected or shapes:
        raise ArchitectureMismatch(
            f"HF keys without official weights: {missing}; official weights without HF key: {unexpected}; "
            f"shape mismatches ({len(shapes)}): {shapes[:8]}"
        )
    hf_model.load_state_dict(mapped, strict=True)
    loaded = hf_model.state_dict()
    wrong = [k for k, v in mapped.items() if not torch.equal(loaded[k], v.to(loaded[k].dtype))]
    assert not wrong, f"HF tensors not holding the copied weights (tied?): {wrong[:8]}"


@contextlib.contextmanager
def recording_hf_discrete_decisions() -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Record the pixel index HF's discrete sampling picks for every coordinate, in our decision order.

    HF's ``multi_scale_deformable_attention_v2`` rounds ``sampling_locations * [W, H] + 0.5`` inside; this wraps
    it and computes, from the very arguments HF receives and with HF's own arithmetic, the values it rounds and
    the clamped outcomes, per level x then y: the ``(values, outcome)`` pairs that
    ``rtdetr_deploy.models.decisions.DecisionLog(replay=...)`` takes (after our own query selection).
    """
    from transformers.models.rt_detr_v2 import modeling_rt_detr_v2 as modeling

    original = modeling.multi_scale_deformable_attention_v2
    recorded: list[tuple[torch.Tensor, torch.Tensor]] = []

    def recording(
        value, value_spatial_shapes, sampling_locations, attention_weights, num_points_list, method="default"
    ):  # noqa: ANN001, ANN202, E501
        if method == "discrete":
            grids = sampling_locations.permute(0, 2, 1, 3, 4).flatten(0, 1).split(num_points_list, dim=-2)
            for level, (height, width) in enumerate(value_spatial_shapes):
                values = grids[level] * torch.tensor([[width, height]], device=value.device) + 0.5
                coords = values.to(torch.int64)
                recorded.append((values[..., 0], coords[..., 0].clamp(0, width - 1)))
                recorded.append((values[..., 1], coords[..., 1].clamp(0, height - 1)))
        return original(value, value_spatial_shapes, sampling_locations, attention_weights, num_points_list, method)

    modeling.multi_scale_deformable_attention_v2 = recording
    try:
        yield recorded
    finally:
        modeling.multi_scale_deformable_attention_v2 = original
