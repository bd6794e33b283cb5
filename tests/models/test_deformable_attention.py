"""Deformable attention: the discrete operator's rounding and clamping, bilinear parity, per-level points."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch.nn import functional as F  # noqa: E402

from rtdetr_deploy.models.deformable_attention import (  # noqa: E402
    MSDeformableAttention,
    deformable_attention,
    discrete_indices,
    sample_bilinear,
    sample_discrete,
)


def _locations(points: list[tuple[float, float]]) -> torch.Tensor:
    return torch.tensor(points, dtype=torch.float32).reshape(1, 1, len(points), 2)


def test_discrete_index_is_integer_part_of_loc_times_size_plus_half():
    # W=4, H=2: x*4+0.5 and y*2+0.5, cast toward zero.
    locs = _locations([(0.0, 0.0), (0.12, 0.24), (0.125, 0.25), (0.5, 0.5), (0.37, 0.74), (0.374, 0.76)])
    index = discrete_indices(locs, height=2, width=4)
    # (0,0)->0; x: .98->0, y: .98->0; x: 1.0->1, y: 1.0->1 -> 1*4+1; (2.5->2, 1.5->1) -> 6;
    # x: 1.98->1, y: 1.98->1 -> 5; x: 1.996->1, y: 2.02->2 clamped to 1 -> 5
    assert index.flatten().tolist() == [0, 0, 5, 6, 5, 5]


def test_discrete_rounding_is_not_grid_samples_nearest():
    """The official rule rounds in corner-aligned coordinates: x*W = 0.6 picks pixel 1, where grid_sample's own
    nearest mode (pixel centres at (i + 0.5) / W) picks pixel 0."""
    locations = _locations([(0.6 / 8, 0.0)])
    index = discrete_indices(locations, height=8, width=8)
    assert index.item() == 1
    pixel_ids = torch.arange(64, dtype=torch.float32).reshape(1, 1, 8, 8)
    nearest = F.grid_sample(pixel_ids, 2 * locations.reshape(1, 1, 1, 2) - 1, mode="nearest", align_corners=False)
    assert nearest.item() == 0.0


def test_discrete_negative_locations_truncate_toward_zero_then_clamp():
    # -0.1*8 + 0.5 = -0.3 -> trunc 0 (floor would give -1); -1*8+0.5 -> -7 -> clamp 0.
    index = discrete_indices(_locations([(-0.1, 0.5), (-1.0, 0.5)]), height=8, width=8)
    assert index.flatten().tolist() == [4 * 8 + 0, 4 * 8 + 0]


def test_discrete_clamps_x_to_width_and_y_to_height_on_rectangular_maps():
    # Far outside on both axes: x clamps to W-1 = 5, y to H-1 = 2 (the official code would clamp x to H-1 = 2).
    index = discrete_indices(_locations([(3.0, 3.0), (0.99, 0.1)]), height=3, width=6)
    assert index.flatten().tolist() == [2 * 6 + 5, 0 * 6 + 5]


def test_discrete_sampling_gathers_the_indexed_pixel_per_channel():
    value = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)
    locs = _locations([(0.1, 0.1), (0.9, 0.9), (0.6, 0.4)])
    sampled = sample_discrete(value, locs)
    assert sampled.shape == (1, 2, 1, 3)
    # (0.9*4+0.5=4.1->4 clamp 3, 0.9*3+0.5=3.2->3 clamp 2); (2.9->2, 1.7->1)
    expected = torch.stack([value[0, :, 0, 0], value[0, :, 2, 3], value[0, :, 1, 2]], dim=-1)
    assert torch.equal(sampled[0, :, 0], expected)


def test_bilinear_sampling_interpolates_between_pixel_centres_with_zero_padding():
    # A 2x2 map; pixel (x, y) has its centre at ((x + 0.5) / 2, (y + 0.5) / 2) in normalised coordinates.
    value = torch.tensor([[4.0, 8.0], [12.0, 16.0]]).reshape(1, 1, 2, 2)
    cases = {
        (0.25, 0.25): 4.0,  # on the centre of pixel (0, 0)
        (0.75, 0.25): 8.0,  # on the centre of pixel (1, 0)
        (0.5, 0.25): 6.0,  # halfway between them
        (0.5, 0.5): 10.0,  # the mean of all four
        (0.25, 0.75): 12.0,  # on the centre of pixel (0, 1)
        (0.0, 0.0): 1.0,  # the map's corner: a quarter of pixel (0, 0), three quarters of zero padding
        (1.25, 0.25): 0.0,  # a whole pixel outside: padding only
    }
    locs = torch.tensor(list(cases), dtype=torch.float32).reshape(1, 1, len(cases), 2)
    sampled = sample_bilinear(value, locs)
    assert sampled.shape == (1, 1, 1, len(cases))
    torch.testing.assert_close(sampled.flatten(), torch.tensor(list(cases.values())))


def test_discrete_picks_pixel_k_for_locations_within_half_a_pixel_of_k_over_size():
    # The official rule rounds loc * W to the nearest integer, i.e. pixel k owns [k - 0.5, k + 0.5) / W.
    # This is half a pixel away from grid_sample(align_corners=False), whose pixel k is centred at (k + 0.5) / W.
    width, height = 10, 6
    ks = torch.arange(width)
    for shift in (-0.49, 0.0, 0.49):
        locs = torch.stack([(ks + shift) / width, torch.zeros(width)], -1).reshape(1, 1, width, 2)
        assert discrete_indices(locs, height, width).flatten().tolist() == ks.tolist()


def test_deformable_attention_weights_each_level_by_its_own_point_count():
    torch.manual_seed(0)
    shapes = [(4, 4), (2, 2)]
    num_points = (3, 1)
    heads, channels = 2, 4
    value = torch.randn(1, 16 + 4, heads, channels)
    locations = torch.rand(1, 5, heads, sum(num_points), 2)
    weights = torch.softmax(torch.randn(1, 5, heads, sum(num_points)), -1)
    out = deformable_attention(value, shapes, locations, weights, num_points, sampling="bilinear")
    assert out.shape == (1, 5, heads * channels)
    # Reference: sum over levels and points, written out per head.
    level0 = value[:, :16].permute(0, 2, 3, 1).reshape(heads, channels, 4, 4)
    level1 = value[:, 16:].permute(0, 2, 3, 1).reshape(heads, channels, 2, 2)
    for h in range(heads):
        locs = locations[0, :, h]
        s0 = sample_bilinear(level0[h : h + 1], locs[None, :, :3])[0]
        s1 = sample_bilinear(level1[h : h + 1], locs[None, :, 3:])[0]
        expected = (torch.cat([s0, s1], -1) * weights[0, :, h][None]).sum(-1).T
        torch.testing.assert_close(out[0, :, h * channels : (h + 1) * channels], expected)


def test_module_switches_sampling_without_touching_weights():
    torch.manual_seed(0)
    attn = MSDeformableAttention(32, 4, (4, 2, 1)).eval()
    with torch.no_grad():
        attn.sampling_offsets.weight.normal_(std=0.5)
    before = {k: v.clone() for k, v in attn.state_dict().items()}
    shapes = [(8, 8), (4, 4), (2, 2)]
    query = torch.randn(2, 6, 32)
    boxes = torch.rand(2, 6, 1, 4) * 0.5 + 0.25
    memory = torch.randn(2, 64 + 16 + 4, 32)
    bilinear = attn(query, boxes, memory, shapes)
    attn.sampling = "discrete"
    discrete = attn(query, boxes, memory, shapes)
    assert attn.state_dict().keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in attn.state_dict().items())
    assert bilinear.shape == discrete.shape == (2, 6, 32)
    assert not torch.allclose(bilinear, discrete)
    with pytest.raises(ValueError, match="unknown sampling method 'nearest'"):
        attn.sampling = "nearest"


def test_points_scale_buffer_holds_one_over_points_per_level():
    attn = MSDeformableAttention(32, 4, (4, 2, 1))
    expected = [0.25] * 4 + [0.5] * 2 + [1.0]
    assert attn.num_points_scale.tolist() == expected
    assert attn.sampling_offsets.out_features == 4 * 7 * 2
    assert attn.attention_weights.out_features == 4 * 7
