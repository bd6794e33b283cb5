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


@pytest.mark.slow  # a second Ray start (about 30 s here); tests/serve covers the service itself
def test_serves_until_the_duration_ends(tiny_onnx: Path) -> None:
    """The command for real: starts Ray on 127.0.0.1, answers, stops by itself after --duration and exits 0."""
    pytest.importorskip("ray.serve", reason="needs Ray Serve: pip install 'rtdetr-deploy[serve]'")
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [sys.executable, "-m", "rtdetr_deploy.cli.serve", str(tiny_onnx), "--port", str(port), "--duration", "8"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline, facts = time.monotonic() + 150, None
        while facts is None and time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/model", timeout=10) as response:
                    facts = json.loads(response.read())
            except OSError:
                time.sleep(0.5)
        assert facts is not None and facts["model"] == tiny_onnx.name and facts["conf"] == 0.25
        out, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert f"Serving {tiny_onnx.name} at http://127.0.0.1:{port}" in out
