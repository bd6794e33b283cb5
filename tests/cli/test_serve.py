"""rtdetr-serve's command line: help, and bad input refused in one line before Ray starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtdetr_deploy.cli.serve import main


def test_help_lists_the_options(capsys) -> None:  # noqa: ANN001
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--host", "--port", "--conf", "--replicas", "--threads", "--max-batch", "--max-wait-ms", "--address"):
        assert flag in text


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--replicas", "0"], "replicas must be a positive integer"),
        (["--conf", "1.5"], "conf must be a score threshold"),
        (["--port", "99999"], "port must be in 0..65535"),
        (["--max-wait-ms", "-3"], "max wait"),
        (["--device", "tpu"], "unknown device"),
    ],
)
def test_bad_values_exit_2_in_one_line(tmp_path: Path, capsys, extra: list[str], fragment: str) -> None:  # noqa: ANN001
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    assert main([str(model), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rtdetr-serve: error:") and fragment in err and len(err.splitlines()) == 1


def test_missing_model_exits_2(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    assert main([str(tmp_path / "nope.onnx")]) == 2
    assert capsys.readouterr().err.strip() == f"rtdetr-serve: error: model not found: {tmp_path / 'nope.onnx'}"
