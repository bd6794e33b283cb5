"""Speed knobs: a model told to run N decoder layers and keep K queries equals a model built that way."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from rtdetr_deploy.models import build_model, load_model  # noqa: E402
from rtdetr_deploy.models.checkpoint import read_checkpoint  # noqa: E402

TINY = Path(__file__).parents[2] / "rtdetr_deploy" / "data" / "weights" / "tiny_synthetic.pth"


def _reference(model, *, num_layers: int, num_queries: int):  # noqa: ANN001, ANN202 - torch modules
    """An independent model built with ``num_layers`` decoder layers and ``num_queries`` queries, loaded from
    the same weights; only the weights of the layers it lacks are left out (``strict=False`` for them alone)."""
    config = replace(model.config, num_decoder_layers=num_layers, eval_idx=-1, num_queries=num_queries)
    reference = build_model(config, num_classes=model.num_classes, sampling=model.sampling)
    state = read_checkpoint(TINY).state_dict
    result = reference.load_state_dict(state, strict=False)
    assert result.missing_keys == []
    dropped = {f"decoder.decoder.layers.{i}." for i in range(num_layers, len(model.decoder.decoder.layers))}
    dropped |= {f"decoder.dec_{head}_head.{i}." for head in ("score", "bbox") for i in range(num_layers, 99)}
    assert all(any(key.startswith(prefix) for prefix in dropped) for key in result.unexpected_keys)
    assert len(result.unexpected_keys) > 0 or num_layers == len(model.decoder.decoder.layers)
    return reference.eval()


@pytest.mark.parametrize(("layers", "queries"), [(1, 50), (2, 50), (1, 20), (2, 7)])
def test_knobs_equal_a_model_built_with_fewer_layers_and_queries(layers, queries):
    model = load_model(TINY, sampling="bilinear").set_speed_knobs(decoder_layers=layers, queries=queries)
    reference = _reference(model, num_layers=layers, num_queries=queries)
    images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model(images), reference(images)
    assert ours["pred_logits"].shape == (2, queries, model.num_classes)
    torch.testing.assert_close(ours["pred_logits"], theirs["pred_logits"], rtol=0, atol=1e-6)
    torch.testing.assert_close(ours["pred_boxes"], theirs["pred_boxes"], rtol=0, atol=1e-6)


def test_fewer_layers_change_the_outputs():
    """The knob is not a no-op: layer 1's head answers differently from layer 2's on the trained tiny model."""
    images = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = load_model(TINY, sampling="bilinear")(images)["pred_boxes"]
        one = load_model(TINY, sampling="bilinear").set_speed_knobs(decoder_layers=1)(images)["pred_boxes"]
    assert (full - one).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"decoder_layers": 0}, r"decoder layers must lie in 1\.\.2"),
        ({"decoder_layers": 3}, r"decoder layers must lie in 1\.\.2"),
        ({"queries": 51}, r"queries must lie in 1\.\.50"),
        ({"queries": 0}, r"queries must lie in 1\.\.50"),
    ],
)
def test_out_of_range_knobs_name_the_valid_range(knobs, message):
    model = load_model(TINY)
    with pytest.raises(ValueError, match=message):
        model.set_speed_knobs(**knobs)


def test_queries_can_be_raised_back_to_the_trained_number():
    model = load_model(TINY).set_speed_knobs(queries=10).set_speed_knobs(queries=50)
    assert model.queries == 50 and model.config.num_queries == 50
