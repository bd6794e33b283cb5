"""PResNet-vd: stage layout, output strides and frozen BatchNorm equivalence."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torchvision.ops import FrozenBatchNorm2d  # noqa: E402

from rtdetr_deploy.models.backbone import PResNet  # noqa: E402


@pytest.mark.parametrize(("depth", "channels"), [(18, [128, 256, 512]), (50, [512, 1024, 2048])])
def test_outputs_strides_8_16_32(depth, channels):
    backbone = PResNet(depth).eval()
    with torch.no_grad():
        feats = backbone(torch.rand(1, 3, 96, 64))
    assert [f.shape[1] for f in feats] == channels == backbone.out_channels
    assert [tuple(f.shape[2:]) for f in feats] == [(12, 8), (6, 4), (3, 2)]


def test_variant_d_downsamples_shortcuts_with_average_pooling():
    backbone = PResNet(34)
    assert isinstance(backbone.res_layers[1].blocks[0].short.pool, torch.nn.AvgPool2d)
    assert not hasattr(backbone.res_layers[1].blocks[1], "short")


def test_frozen_norm_computes_what_eval_batch_norm_computes():
    torch.manual_seed(0)
    trainable = PResNet(18, width=16).eval()
    with torch.no_grad():
        for module in trainable.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    frozen = PResNet(18, width=16, freeze_norm=True).eval()
    frozen.load_state_dict(trainable.state_dict(), strict=True)
    assert any(isinstance(m, FrozenBatchNorm2d) for m in frozen.modules())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(trainable(x), frozen(x), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
