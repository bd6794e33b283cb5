"""Transforms, sampler, EMA, optimizer groups and warm-up, on small hand-made inputs."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from torchvision import tv_tensors  # noqa: E402

from rtdetr_deploy.models import build_model, get_preset  # noqa: E402
from rtdetr_deploy.train.config import TrainConfig  # noqa: E402
from rtdetr_deploy.train.distributed import EpochSampler  # noqa: E402
from rtdetr_deploy.train.ema import ModelEMA  # noqa: E402
from rtdetr_deploy.train.optim import build_optimizer, build_warmup, freeze_sampling_offsets, freeze_stem  # noqa: E402
from rtdetr_deploy.train.transforms import build_transforms, resize_batch  # noqa: E402


def _sample(height=60, width=80):
    image = tv_tensors.Image(torch.randint(0, 255, (3, height, width), dtype=torch.uint8))
    boxes = tv_tensors.BoundingBoxes(
        torch.tensor([[10.0, 10.0, 30.0, 40.0], [40.0, 20.0, 79.0, 59.0]]), format="XYXY", canvas_size=(height, width)
    )
    return image, {"boxes": boxes, "labels": torch.tensor([0, 1])}


def test_eval_transform_resizes_and_ends_in_normalised_cxcywh():
    image, target = build_transforms((32, 64), train=False)(*_sample())
    assert image.shape == (3, 32, 64) and image.dtype == torch.float32
    assert type(target["boxes"]) is torch.Tensor
    torch.testing.assert_close(target["boxes"][0], torch.tensor([20 / 80, 25 / 60, 20 / 80, 30 / 60]))


@pytest.mark.parametrize("strong", [True, False])
def test_train_transforms_keep_boxes_valid(strong):
    transform = build_transforms((64, 64), train=True, strong=strong)
    for seed in range(30):
        torch.manual_seed(seed)
        image, target = transform(*_sample())
        boxes = target["boxes"]
        assert image.shape == (3, 64, 64)
        assert len(boxes) == len(target["labels"])
        assert ((boxes >= 0) & (boxes <= 1)).all()
        assert (boxes[:, 2:] > 0).all()


def test_strong_ops_are_the_official_three_and_only_in_strong_pipelines():
    names = lambda t: {type(op).__name__ for op in t.transforms}  # noqa: E731
    strong = names(build_transforms((64, 64), train=True, strong=True))
    plain = names(build_transforms((64, 64), train=True, strong=False))
    assert {"RandomPhotometricDistort", "RandomZoomOut", "RandomApply"} <= strong
    assert not {"RandomPhotometricDistort", "RandomZoomOut", "RandomApply"} & plain
    assert {"RandomHorizontalFlip", "Resize", "SanitizeBoundingBoxes"} <= plain


def test_resize_batch_and_multiscale_sizes():
    assert resize_batch(torch.rand(2, 3, 64, 64), (96, 32)).shape == (2, 3, 96, 32)
    sizes = TrainConfig(preset="r18vd").multiscale_sizes()
    # The official list for 640: 480..800 in steps of 32, 640 three times.
    assert sorted({s[0] for s in sizes}) == list(range(480, 801, 32))
    assert [s[0] for s in sizes].count(640) == 3


def test_epoch_sampler_deals_each_epoch_once_across_processes_and_resumes_mid_epoch():
    samplers = [EpochSampler(10, batch=2, rank=r, world=2, seed=3) for r in range(2)]
    for s in samplers:
        s.set_epoch(1)
    parts = [list(s) for s in samplers]
    assert len(parts[0]) == len(parts[1]) == 4  # 5 per process, cut to whole batches of 2
    assert not set(parts[0]) & set(parts[1])
    samplers[0].set_epoch(2)
    other_epoch = list(samplers[0])
    assert other_epoch != parts[0]
    samplers[0].set_epoch(1, start_batch=1)
    assert list(samplers[0]) == parts[0][2:] and len(samplers[0]) == 2
    evaluation = [list(EpochSampler(5, batch=2, rank=r, world=2, shuffle=False)) for r in range(2)]
    assert evaluation == [[0, 2, 4], [1, 3]]


def test_ema_follows_the_official_formula_and_keeps_inf_buffers():
    model = torch.nn.Linear(2, 1)
    model.register_buffer("anchors", torch.tensor([1.0, math.inf]))
    ema = ModelEMA(model, decay=0.9, warmups=1)
    with torch.no_grad():
        model.weight.fill_(1.0)
    before = ema.module.weight.clone()
    ema.update(model)
    d = 0.9 * (1 - math.exp(-1))
    torch.testing.assert_close(ema.module.weight, d * before + (1 - d) * torch.ones_like(before))
    assert ema.module.anchors[1] == math.inf
    assert ema.state_dict()["updates"] == 1 and not ema.module.weight.requires_grad


def test_optimizer_groups_give_the_backbone_its_lr_and_norms_and_biases_no_decay():
    model = build_model(get_preset("tiny"), num_classes=3)
    optimizer = build_optimizer(model, lr=1e-3, backbone_lr=1e-5, weight_decay=0.1)
    by_param = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    for name, param in model.named_parameters():
        group = by_param[id(param)]
        assert group["lr"] == (1e-5 if name.startswith("backbone.") else 1e-3), name
        assert group["weight_decay"] == (0.0 if param.ndim <= 1 else 0.1), name
    assert optimizer.param_groups[0]["lr"] == 1e-3


def test_warmup_is_linear_then_constant_and_frozen_offsets_leave_the_optimizer():
    model = build_model(get_preset("tiny"), num_classes=3)
    assert freeze_sampling_offsets(model) == get_preset("tiny").num_decoder_layers * 2  # weight and bias per layer
    optimizer = build_optimizer(model, lr=1.0, backbone_lr=1.0, weight_decay=0.0)
    trained = {id(p) for g in optimizer.param_groups for p in g["params"]}
    offsets = [p for n, p in model.named_parameters() if "sampling_offsets" in n]
    assert offsets and not any(id(p) in trained for p in offsets)
    scheduler = build_warmup(optimizer, warmup_steps=4)
    lrs = []
    for _ in range(6):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"preset": "r18"}, "unknown preset 'r18'"),
        ({"sampling": "nearest"}, "unknown sampling method"),
        ({"imgsz": (100, 100)}, "multiples of 32"),
        ({"epochs": 0}, "epochs must be at least 1"),
        ({"stop_epoch": 9, "epochs": 5}, "stop_epoch must lie in"),
        ({"batch": 0}, "batch must be at least 1"),
        ({"minutes": 0}, "minutes must be positive"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"init": "a.pth", "resume": "b.pth"}, "exclude each other"),
        ({"device": "tpu"}, "device must be"),
    ],
)
def test_train_config_rejects_bad_values(overrides, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**overrides)


def test_stem_freezing_matches_the_official_r50_setting():
    model = build_model(get_preset("r50vd"), num_classes=2)
    assert freeze_stem(model) == 3  # conv1_1..conv1_3 convolutions (their norms are frozen BatchNorms already)
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith("backbone.conv1."))
    assert model.backbone.res_layers[0].blocks[0].branch2a.conv.weight.requires_grad
