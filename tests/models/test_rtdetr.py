"""The assembled model: shapes per preset, sampling switch, input checks, eval-size handling, deploy()."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from helpers import randomize_heads  # noqa: E402

from rtdetr_deploy.models import PRESETS, build_model, get_preset, rtdetrv2_r18vd  # noqa: E402
from rtdetr_deploy.models.deformable_attention import MSDeformableAttention  # noqa: E402

PARAMS_M = {"r18vd": 20.2, "r34vd": 31.4, "r50vd_m": 36.6, "r50vd": 42.9, "r101vd": 76.6}


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = build_model(get_preset("tiny"), num_classes=5)
    randomize_heads(model)
    return model.eval()


@pytest.mark.parametrize("name", list(PARAMS_M))
def test_official_sizes_build_with_the_published_parameter_counts_and_output_shapes(name):
    model = build_model(PRESETS[name], num_classes=80).eval()
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    assert params_m == pytest.approx(PARAMS_M[name], abs=0.05)
    with torch.no_grad():
        out = model(torch.rand(1, 3, 128, 160))
    assert out["pred_logits"].shape == (1, 300, 80)
    assert out["pred_boxes"].shape == (1, 300, 4)


def test_official_state_dict_keys_follow_the_release_names():
    keys = set(rtdetrv2_r18vd().state_dict())
    for key in (
        "backbone.conv1.conv1_1.conv.weight",
        "backbone.res_layers.1.blocks.0.short.conv.conv.weight",
        "backbone.res_layers.0.blocks.0.short.conv.weight",
        "encoder.input_proj.0.conv.weight",
        "encoder.encoder.0.layers.0.self_attn.in_proj_weight",
        "encoder.fpn_blocks.0.bottlenecks.0.conv1.conv.weight",
        "encoder.pan_blocks.1.conv3.norm.running_var",
        "decoder.input_proj.2.norm.weight",
        "decoder.decoder.layers.2.cross_attn.num_points_scale",
        "decoder.enc_output.proj.weight",
        "decoder.dec_bbox_head.2.layers.2.bias",
        "decoder.query_pos_head.layers.1.weight",
        "decoder.denoising_class_embed.weight",
        "decoder.anchors",
        "decoder.valid_mask",
    ):
        assert key in keys, key


def test_frozen_norm_presets_store_no_batch_counters_in_the_backbone():
    sd = build_model(PRESETS["r50vd"]).state_dict()
    assert not [k for k in sd if k.startswith("backbone.") and "num_batches_tracked" in k]
    assert [k for k in sd if k.startswith("encoder.") and "num_batches_tracked" in k]


def test_state_dict_round_trip_reproduces_outputs(tiny_model):
    clone = build_model(get_preset("tiny"), num_classes=5).eval()
    clone.load_state_dict(tiny_model.state_dict(), strict=True)
    images = torch.rand(2, 3, 128, 96)
    with torch.no_grad():
        a, b = tiny_model(images), clone(images)
    assert torch.equal(a["pred_logits"], b["pred_logits"])
    assert torch.equal(a["pred_boxes"], b["pred_boxes"])


def test_sampling_switches_on_a_loaded_model_and_back(tiny_model):
    images = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        bilinear = tiny_model(images)["pred_logits"]
        tiny_model.set_sampling("discrete")
        assert all(m.sampling == "discrete" for m in tiny_model.modules() if isinstance(m, MSDeformableAttention))
        discrete = tiny_model(images)["pred_logits"]
        tiny_model.set_sampling("bilinear")
        again = tiny_model(images)["pred_logits"]
    assert not torch.allclose(bilinear, discrete)
    assert torch.equal(bilinear, again)
    with pytest.raises(ValueError, match="choose from bilinear, discrete"):
        tiny_model.set_sampling("nearest")


def test_build_model_takes_the_sampling_argument():
    assert build_model(get_preset("tiny"), sampling="discrete").sampling == "discrete"
    with pytest.raises(ValueError, match="unknown sampling method"):
        build_model(get_preset("tiny"), sampling="grid")


def test_other_input_sizes_compute_anchors_on_the_fly_and_match_precomputed(tiny_model):
    images = torch.rand(1, 3, 192, 256)
    with torch.no_grad():
        on_the_fly = tiny_model(images)
        precomputed = copy.deepcopy(tiny_model).set_eval_size((192, 256))(images)
    assert torch.equal(on_the_fly["pred_logits"], precomputed["pred_logits"])
    assert torch.equal(on_the_fly["pred_boxes"], precomputed["pred_boxes"])


def test_precomputed_anchors_equal_generated_ones(tiny_model):
    shapes = [(320 // s, 320 // s) for s in (8, 16, 32)]
    anchors, valid = tiny_model.decoder.generate_anchors(shapes)
    assert torch.equal(anchors, tiny_model.decoder.anchors)
    assert torch.equal(valid, tiny_model.decoder.valid_mask)
    # Border cells are invalid: their inverse-sigmoid anchor is inf.
    assert torch.isinf(anchors[~valid.expand_as(anchors)]).all()


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.rand(1, 3, 100, 128), "multiples of 32, got 100x128"),
        (torch.rand(1, 1, 64, 64), r"shape \[B, 3, H, W\]"),
        (torch.rand(3, 64, 64), r"shape \[B, 3, H, W\]"),
        (torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8), "float tensor"),
        ([[0.0]], "torch.Tensor"),
    ],
)
def test_bad_inputs_raise_one_clear_value_error(tiny_model, images, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(images)


def test_eval_idx_stops_the_decoder_early_and_uses_that_layers_head():
    torch.manual_seed(0)
    cfg = get_preset("tiny")
    from dataclasses import replace

    model = build_model(replace(cfg, num_decoder_layers=3, eval_idx=1), num_classes=4)
    randomize_heads(model)
    model.eval()
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        early = model(images)
        # Dropping the unused last layer must not change anything.
        model.decoder.decoder.layers = model.decoder.decoder.layers[:2]
        truncated = model(images)
    assert torch.equal(early["pred_logits"], truncated["pred_logits"])


def test_deploy_fuses_repvgg_blocks_without_changing_outputs(tiny_model):
    images = torch.rand(2, 3, 128, 128)
    deployed = copy.deepcopy(tiny_model)
    # Non-trivial BatchNorm statistics, so the fusion has something to fold.
    with torch.no_grad():
        for module in deployed.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    reference = copy.deepcopy(deployed).eval()
    deployed.deploy()
    assert not any(hasattr(m, "conv1") for m in deployed.encoder.fpn_blocks[0].bottlenecks)
    with torch.no_grad():
        # Compared where the fusion acts; downstream, a 1e-6 change can reorder near-tied query selections.
        fused_maps = deployed.encoder(deployed.backbone(images))
        reference_maps = reference.encoder(reference.backbone(images))
    for fused, expected in zip(fused_maps, reference_maps, strict=True):
        torch.testing.assert_close(fused, expected, atol=1e-4, rtol=1e-4)


def test_training_forward_returns_auxiliary_and_denoising_outputs():
    torch.manual_seed(0)
    cfg = get_preset("tiny")
    model = build_model(cfg, num_classes=4).train()
    targets = [
        {"labels": torch.tensor([1, 2]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.1]])},
        {"labels": torch.tensor([3]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])},
    ]
    out = model(torch.rand(2, 3, 64, 64), targets)
    assert out["pred_logits"].shape == (2, cfg.num_queries, 4)
    assert len(out["aux_outputs"]) == cfg.num_decoder_layers - 1
    assert len(out["enc_aux_outputs"]) == 1
    meta = out["dn_meta"]
    num_dn = meta.num_split[0]
    assert num_dn == 2 * 2 * meta.num_groups
    assert out["dn_aux_outputs"][-1]["pred_boxes"].shape == (2, num_dn, 4)
    loss = out["pred_logits"].sum() + out["dn_aux_outputs"][-1]["pred_boxes"].sum()
    loss.backward()
    assert model.decoder.denoising_class_embed.weight.grad is not None


def test_an_input_with_fewer_encoder_positions_than_queries_is_one_clear_error(tiny_model):
    # 64x64 gives 8x8 + 4x4 + 2x2 = 84 positions at strides 8, 16, 32: enough for the tiny preset's 50 queries;
    # 32x32 gives 16 + 4 + 1 = 21.
    assert tiny_model(torch.rand(1, 3, 64, 64))["pred_logits"].shape[1] == tiny_model.decoder.num_queries
    with pytest.raises(ValueError, match="21 encoder positions, fewer than the 50 queries"):
        tiny_model(torch.rand(1, 3, 32, 32))
