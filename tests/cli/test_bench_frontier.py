"""rtdetr-bench --frontier and the speed-knob flags: refusals before any export, with exit 2 and one line."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from rtdetr_deploy.cli.bench import main  # noqa: E402

TINY = Path(__file__).parents[2] / "rtdetr_deploy" / "data" / "weights" / "tiny_synthetic.pth"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([str(TINY), "--frontier"], "--frontier needs labelled data"),
        (
            [str(TINY), "--frontier", "--data", "synthetic", "--decoder-layers", "1,3"],
            "decoder layers must lie in 1..2",
        ),
        ([str(TINY), "--frontier", "--data", "synthetic", "--queries", "50,80"], "queries must lie in 1..50"),
        ([str(TINY), "--frontier", "--data", "synthetic", "--sizes", "200"], "multiples of 32"),
        ([str(TINY), "--frontier", "--data", "synthetic", "--precision", "bf16"], "frontier precision 'bf16'"),
        ([str(TINY), "--frontier", "--data", "synthetic", "--sizes", "32"], "21 encoder positions, fewer than 50"),
        ([str(TINY), "--frontier", "--data", "synthetic", "--seconds", "1"], "it does not take --seconds"),
        ([str(TINY), "--sizes", "256"], "--sizes only apply with --frontier"),
        ([str(TINY), "--decoder-layers", "1,2"], "--decoder-layers takes one value"),
        ([str(TINY), "--queries", "0"], "--queries must be positive"),
    ],
)
def test_refusals_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rtdetr-bench: error:") and message in err[0], err


def test_an_exported_file_refuses_the_knobs(tmp_path, capsys):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not read")
    assert main([str(model), "--decoder-layers", "1", "--no-peak"]) == 2
    assert "has its decoder layers and queries built in" in capsys.readouterr().err
