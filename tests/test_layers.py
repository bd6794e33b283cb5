"""The layer contracts of pyproject.toml hold (import-linter), so CI breaks on an import against the layers."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _lint_imports() -> str:
    beside_python = Path(sys.executable).with_name("lint-imports")
    found = str(beside_python) if beside_python.exists() else shutil.which("lint-imports")
    if found is None:
        pytest.fail("import-linter is not installed: pip install 'rtdetr-deploy[dev]'")
    return found


def test_the_layer_contracts_are_kept() -> None:
    result = subprocess.run([_lint_imports(), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Contracts: 4 kept, 0 broken." in result.stdout


def test_a_contract_breaks_on_an_import_against_the_layers(tmp_path: Path) -> None:
    """The contracts can fail: a copy of the package where the runtime imports the exporter is refused."""
    package = tmp_path / "rtdetr_deploy"
    shutil.copytree(REPO / "rtdetr_deploy", package, ignore=shutil.ignore_patterns("__pycache__", "weights"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    detector = package / "runtime" / "detector.py"
    detector.write_text(detector.read_text() + "\nfrom ..export import pipeline  # noqa: E402,F401\n")
    env = {"PYTHONPATH": str(tmp_path), "PATH": str(Path(sys.executable).parent)}
    result = subprocess.run(
        [_lint_imports(), "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode != 0
    assert "rtdetr_deploy.runtime.detector" in result.stdout and "rtdetr_deploy.export" in result.stdout
