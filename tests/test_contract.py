"""The deploy contract's rules, each written once and used by every layer that checks it."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtdetr_deploy.contract import SAMPLING_METHODS, check_batch_range, check_sampling
from rtdetr_deploy.metadata import ModelMetadata


@pytest.mark.parametrize("batch", [(1, 1, 1), (1, 4, 8), (2, 2, 2)])
def test_valid_batch_ranges(batch):
    assert check_batch_range(batch) == batch
    assert check_batch_range(list(batch)) == batch


@pytest.mark.parametrize("batch", [(0, 1, 1), (4, 2, 8), (1, 8, 4), (1, 2), (1.0, 2, 4), (True, 2, 4)])
def test_invalid_batch_ranges_name_the_rule(batch):
    with pytest.raises(ValueError, match="MIN, OPT, MAX|1 <= MIN <= OPT <= MAX"):
        check_batch_range(batch)


def test_model_metadata_and_export_config_refuse_the_same_ranges(tmp_path: Path):
    meta = dict(preset="r18", input_size=(640, 640), class_names=("a",), category_ids=(1,))
    with pytest.raises(ValueError, match="1 <= MIN <= OPT <= MAX"):
        ModelMetadata(**meta, batch=(4, 2, 8))
    assert ModelMetadata(**meta, batch=(1, 4, 8)).batch == (1, 4, 8)
    config = pytest.importorskip("rtdetr_deploy.export.config", reason="the exporter needs onnx")
    with pytest.raises(ValueError, match="1 <= MIN <= OPT <= MAX"):
        config.ExportConfig(weights=tmp_path / "w.pth", out_dir=tmp_path, batch=(4, 2, 8))


def test_sampling_names():
    assert SAMPLING_METHODS == ("bilinear", "discrete")
    assert check_sampling("discrete") == "discrete"
    with pytest.raises(ValueError, match="choose from bilinear, discrete"):
        check_sampling("nearest")
    with pytest.raises(ValueError, match="choose from bilinear, discrete"):
        ModelMetadata(preset="r18", input_size=(640, 640), class_names=("a",), category_ids=(1,), sampling="nearest")
