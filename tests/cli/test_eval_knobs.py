"""rtdetr-eval --decoder-layers / --queries: a checkpoint only, valid ranges named, exit 2 on bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from rtdetr_deploy.cli.eval import main  # noqa: E402

TINY = Path(__file__).parents[2] / "rtdetr_deploy" / "data" / "weights" / "tiny_synthetic.pth"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--decoder-layers", "5"], "decoder layers must lie in 1..2"),
        (["--queries", "51"], "queries must lie in 1..50"),
    ],
)
def test_out_of_range_exits_2_naming_the_range(flags, message, capsys):
    assert main([str(TINY), "--data", "synthetic", "--no-progress", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rtdetr-eval: error:") and message in err[0], err


def test_an_exported_file_refuses_the_knobs(tmp_path, capsys):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not read")
    assert main([str(model), "--data", "synthetic", "--queries", "10", "--no-progress"]) == 2
    assert "has its decoder layers and queries built in" in capsys.readouterr().err
