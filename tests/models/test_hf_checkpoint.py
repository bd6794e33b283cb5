"""Loading transformers ``save_pretrained`` folders of RT-DETRv2, with transformers itself as the reference.

Each folder holds random weights that transformers wrote (``hf_folders``); the reference is what
``RTDetrV2ForObjectDetection.from_pretrained(folder)`` computes. Every query's logits and boxes must agree within
1e-4, up to the order of the queries (``hf_folders.match_queries``): transformers computes the AIFI position
embedding in float64 (float32 here, about 1e-6 apart), which can swap near-tied queries in the query selection.
With discrete sampling transformers gets the official float32 embedding (``hf_reference``): pixel rounding would
turn that 1e-6 into other pixels for a few queries (r50vd: 3 queries off by up to 0.4 in the logits, all others
by 4e-4 through self-attention; with the float32 embedding the two agree to 3e-6).

On their way, these tests check what ``load_model`` reads off ``config.json``: the architecture (named after its
preset, with transformers' decoder depth), the classes, the sampling and the input size.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

from hf_folders import (  # noqa: E402
    OFFICIAL_SIZES,
    TINY_CLASSES,
    match_queries,
    official_hf_config,
    save_hf_folder,
    tiny_hf_config,
)
from transformers import RTDetrV2ForObjectDetection  # noqa: E402

from benchmarks.hf_reference import official_to_hf_state_dict, use_official_position_embedding  # noqa: E402
from rtdetr_deploy.errors import CheckpointError  # noqa: E402
from rtdetr_deploy.models import (  # noqa: E402
    PRESETS,
    build_model,
    get_preset,
    hf_to_official_state_dict,
    load_model,
    model_config_from_transformers,
)

ATOL = 1e-4
OFFICIAL_CASES = [
    pytest.param(name, method, id=f"{name}-{method}", marks=pytest.mark.slow)
    for name in OFFICIAL_SIZES
    for method in ("default", "discrete")
]


@pytest.fixture(scope="module", params=["default", "discrete"])
def tiny_folders(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small configuration with each ``decoder_method``."""
    folder = tmp_path_factory.mktemp(f"tiny_{request.param}")
    return save_hf_folder(folder, tiny_hf_config(decoder_method=request.param))


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_hf_folder(tmp_path_factory.mktemp("tiny"), tiny_hf_config())


def _compare(folder: Path, size: int, *, seed: int = 0) -> dict[str, float]:
    """Max abs differences of our model's logits and boxes from transformers' on one random image, query by query
    (queries matched up to their order: see ``hf_folders.match_queries``)."""
    ours = load_model(folder)
    theirs = RTDetrV2ForObjectDetection.from_pretrained(folder).eval()
    if ours.sampling == "discrete":
        use_official_position_embedding(theirs)
    images = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = ours(images)
        ref = theirs(pixel_values=images)
    assert ref.logits.std() > 0.1 and ref.pred_boxes.std() > 0.01, "outputs nearly constant: weights too weak"
    return match_queries(out["pred_logits"][0], out["pred_boxes"][0], ref.logits[0], ref.pred_boxes[0])


def test_tiny_folder_matches_transformers_and_reads_its_config(tiny_folders: Path) -> None:
    diffs = _compare(tiny_folders, 320)
    print(f"{tiny_folders.name}: {diffs}")
    assert max(diffs["logits"], diffs["boxes"]) <= ATOL, diffs
    model = load_model(tiny_folders)
    method = json.loads((tiny_folders / "config.json").read_text())["decoder_method"]
    assert model.sampling == {"default": "bilinear", "discrete": "discrete"}[method]
    assert model.info.class_names == TINY_CLASSES and model.num_classes == 3
    assert model.info.input_size == (320, 320) == model.config.eval_size  # anchor_image_size
    assert model.config.name == "custom-r18vd" and not model.config.official
    assert (model.config.hidden_dim, model.config.num_decoder_layers, model.config.num_points) == (64, 2, (2, 2, 2))


@pytest.mark.parametrize(("name", "method"), OFFICIAL_CASES)
def test_official_sizes_match_transformers(name: str, method: str, tmp_path: Path) -> None:
    folder = save_hf_folder(tmp_path / name, official_hf_config(name, decoder_method=method))
    diffs = _compare(folder, 640)
    print(f"{name}/{method}: {diffs}")
    assert max(diffs["logits"], diffs["boxes"]) <= ATOL, diffs
    assert load_model(folder).config.name == name


@pytest.mark.parametrize("name", OFFICIAL_SIZES)
def test_config_of_each_official_size_is_its_preset_with_transformers_decoder_depth(name: str) -> None:
    config, sampling = model_config_from_transformers(official_hf_config(name).to_dict(), source=name)
    preset = get_preset(name)
    # transformers evaluates its last decoder layer (r50vd_m: the 6th; the official eval_idx is the 3rd) and its
    # conversion freezes every backbone's norms, r18vd and r34vd included.
    assert config == replace(preset, eval_idx=-1, freeze_norm=True)
    assert sampling == "bilinear"


def _distinct(like: torch.Tensor, offset: int) -> torch.Tensor:
    """A stand-in for ``like`` with its first dimension (what the q/k/v stacking splits) and values found nowhere
    else: a tensor that lands on another key, or q/k/v stacked in another order, would show."""
    if like.ndim == 0 or not like.is_floating_point():
        return torch.zeros(like.shape, dtype=like.dtype)
    return torch.arange(like.shape[0], dtype=torch.float32) + 1e4 * offset


def test_renaming_inverts_the_reference_mapping() -> None:
    """``hf_reference`` renames official keys to transformers' in-memory names (``aifi``, ``mlp.fc1``, ``o_proj``);
    the package's renaming brings them back, tensor for tensor, for every official size."""
    for name, preset in PRESETS.items():
        if not preset.official:
            continue
        with torch.device("meta"):
            official = build_model(preset, num_classes=7).state_dict()
        official = {k: _distinct(v, i) for i, (k, v) in enumerate(official.items())}
        hf_keys = official_to_hf_state_dict(official)
        back, _, unmapped = hf_to_official_state_dict(hf_keys)
        assert not unmapped, (name, unmapped[:3])
        expected = {k: v for k, v in official.items() if k not in ("decoder.anchors", "decoder.valid_mask")}
        assert set(back) == set(expected), (name, sorted(set(back) ^ set(expected))[:5])
        assert all(torch.equal(back[k], expected[k]) for k in expected), name


def _hf_tensors(folder: Path) -> dict[str, torch.Tensor]:
    return safetensors_torch.load_file(str(folder / "model.safetensors"))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_pytorch_model_bin_sharded_safetensors_and_the_file_itself(tiny_folder: Path, tmp_path: Path) -> None:
    reference = load_model(tiny_folder)
    tensors = _hf_tensors(tiny_folder)
    config = (tiny_folder / "config.json").read_text()
    as_bin = tmp_path / "bin"
    as_bin.mkdir()
    (as_bin / "config.json").write_text(config)
    torch.save(tensors, as_bin / "pytorch_model.bin")
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / "config.json").write_text(config)
    keys = sorted(tensors)
    weight_map = {}
    for i, part in enumerate((keys[::2], keys[1::2])):
        name = f"model-0000{i + 1}-of-00002.safetensors"
        safetensors_torch.save_file({k: tensors[k] for k in part}, str(sharded / name))
        weight_map |= dict.fromkeys(part, name)
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    for source in (as_bin, sharded, tiny_folder / "model.safetensors"):
        model = load_model(source)
        assert _same_weights(model, reference), source
        assert model.info.class_names == TINY_CLASSES


def test_safetensors_file_of_official_keys(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(get_preset("tiny"), num_classes=4)
    path = tmp_path / "weights.safetensors"
    safetensors_torch.save_file(model.state_dict(), str(path))
    loaded = load_model(path)
    assert loaded.config == get_preset("tiny") and loaded.num_classes == 4
    assert _same_weights(loaded, model)


def test_bin_with_pickled_code_is_refused(tiny_folder: Path, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text((tiny_folder / "config.json").read_text())
    torch.save({"weights": _hf_tensors(tiny_folder), "extra": replace}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_model(tmp_path)


_BLOCK_TRANSFORMERS = """
import importlib.abc, sys

class BlockTransformers(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "transformers":
            raise ImportError(f"{name} is blocked: loading a folder must not need transformers")
        return None

sys.meta_path.insert(0, BlockTransformers())
"""


def test_folder_loads_without_transformers(tiny_folder: Path) -> None:
    """The package reads config.json and the weights itself: importing transformers fails in this interpreter."""
    code = f"from rtdetr_deploy.models import load_model\nprint(load_model({str(tiny_folder)!r}).config.name)"
    result = subprocess.run(
        [sys.executable, "-c", _BLOCK_TRANSFORMERS + code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == "custom-r18vd", result.stderr[-2000:]
