"""The tiny checkpoints shipped in the package (bilinear, and its discrete fine-tune): load like any other, say how
they were made, and can be remade."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from rtdetr_deploy import load_model  # noqa: E402
from rtdetr_deploy.data import CATEGORIES, pretrained_tiny  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_it_loads_with_weights_only_and_knows_its_classes() -> None:
    raw = torch.load(pretrained_tiny(), map_location="cpu", weights_only=True)
    model = load_model(pretrained_tiny())
    assert model.config.name == "tiny" and model.sampling == "bilinear"
    assert model.info.class_names == tuple(CATEGORIES.values())
    assert model.info.category_ids == tuple(CATEGORIES)
    # FP16 storage, the anchors kept FP32; the model itself computes in FP32.
    assert raw["model"]["backbone.conv1.conv1_1.conv.weight"].dtype == torch.float16
    assert raw["model"]["decoder.anchors"].dtype == torch.float32
    assert next(model.parameters()).dtype == torch.float32


def test_its_provenance_travels_inside() -> None:
    provenance = torch.load(pretrained_tiny(), map_location="cpu", weights_only=True)["provenance"]
    # The script that made it is in the repository (in tools/: checkpoints made before the move name benchmarks/).
    assert (REPO / "tools" / Path(provenance["script"]).name).is_file(), provenance["script"]
    assert [phase["preset"] for phase in provenance["phases"]] == [load_model(pretrained_tiny()).config.name] * 2


def test_the_package_stays_small() -> None:
    assert pretrained_tiny().stat().st_size < 10 * 2**20
    assert pretrained_tiny(sampling="discrete").stat().st_size < 10 * 2**20


def test_the_discrete_fine_tune_says_it_was_trained_discrete() -> None:
    model = load_model(pretrained_tiny(sampling="discrete"))
    assert model.config.name == "tiny" and model.info.sampling == "discrete" and model.sampling == "discrete"
    provenance = torch.load(pretrained_tiny(sampling="discrete"), map_location="cpu", weights_only=True)["provenance"]
    assert provenance["phases"][0]["sampling"] == "discrete" and provenance["phases"][0]["init"].endswith(
        "tiny_synthetic.pth"
    )
    assert 0.5 < provenance["val_metrics_discrete"]["AP"] <= 1.0


@pytest.mark.slow
def test_the_benchmark_script_regenerates_the_same_architecture(tmp_path: Path) -> None:
    dest = tmp_path / "regenerated.pth"
    command = [
        sys.executable, "tools/train_demo_weights.py", "--epochs", "1", "1", "--train-images", "16",
        "--dest", str(dest), "--json", str(tmp_path / "record.json"), "--out", str(tmp_path / "run"),
        "--discrete-epochs", "1", "--discrete-dest", str(tmp_path / "discrete.pth"),
        "--discrete-json", str(tmp_path / "discrete.json"),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    shipped = torch.load(pretrained_tiny(), map_location="cpu", weights_only=True)
    regenerated = torch.load(dest, map_location="cpu", weights_only=True)
    assert regenerated["config"] == shipped["config"]
    assert {k: tuple(v.shape) for k, v in regenerated["model"].items()} == {
        k: tuple(v.shape) for k, v in shipped["model"].items()
    }
    assert regenerated["provenance"]["phases"][0]["epochs"] == 1
    assert load_model(dest).info.category_ids == tuple(CATEGORIES)
    assert load_model(tmp_path / "discrete.pth").info.sampling == "discrete"
