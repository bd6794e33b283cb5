"""The commands on transformers ``save_pretrained`` folders: ``rtdetr-export FOLDER`` against transformers, a folder
on the torch backend, and every bad folder as one line with exit status 2.

The reference is transformers end to end: ``RTDetrV2ForObjectDetection.from_pretrained(FOLDER)`` and
``RTDetrImageProcessor.post_process_object_detection`` (the official post-processing: sigmoid, top-k over
queries x classes, boxes scaled to the original size). Detections are compared with scores and boxes (relative
to the image) within 1e-4, up to the order of detections whose scores tie within that
(``hf_folders.match_detections``). Each folder is exported in the sampling its ``decoder_method`` names:
``--sampling bilinear`` for ``default`` (the export's own default is discrete).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

from hf_folders import (  # noqa: E402
    OFFICIAL_SIZES,
    TINY_CLASSES,
    detection_deviation,
    match_detections,
    official_hf_config,
    save_hf_folder,
    tiny_hf_config,
)
from transformers import DetrConfig, RTDetrConfig, RTDetrImageProcessor, RTDetrV2ForObjectDetection  # noqa: E402

from benchmarks.hf_reference import use_official_position_embedding  # noqa: E402
from rtdetr_deploy.cli import eval as eval_cli  # noqa: E402
from rtdetr_deploy.cli import export as export_cli  # noqa: E402
from rtdetr_deploy.cli import infer as infer_cli  # noqa: E402
from rtdetr_deploy.metadata import ModelMetadata  # noqa: E402
from rtdetr_deploy.models import load_model  # noqa: E402

ATOL = 1e-4
ORIGINAL_SIZE = (960, 720)  # (width, height) the boxes are scaled to
DATA_DIR = Path(__file__).parents[1] / "data"
SLOW_EXPORTS = [
    pytest.param(name, method, id=f"{name}-{method}", marks=pytest.mark.slow)
    for name in OFFICIAL_SIZES
    for method in ("default", "discrete")
]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_hf_folder(tmp_path_factory.mktemp("hf") / "tiny_detr", tiny_hf_config())


def _export(folder: Path, out: Path, method: str, *extra: str) -> Path:
    sampling = {"default": "bilinear", "discrete": "discrete"}[method]
    assert export_cli.main([str(folder), "-o", str(out), "--sampling", sampling, *extra]) == 0
    return out / f"{folder.name}.onnx"


def _image(size: int) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))


def _postprocess(outputs: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """transformers' official post-processing of ``outputs.logits``/``outputs.pred_boxes``, every detection kept."""
    width, height = ORIGINAL_SIZE
    processor = RTDetrImageProcessor()
    found = processor.post_process_object_detection(outputs, threshold=-1.0, target_sizes=[(height, width)])[0]
    return found["labels"].numpy(), found["boxes"].numpy(), found["scores"].numpy()


def _transformers_detections(folder: Path, images: torch.Tensor, *, official_embedding: bool = False) -> tuple:
    model = RTDetrV2ForObjectDetection.from_pretrained(folder).eval()
    if official_embedding:
        use_official_position_embedding(model)
    with torch.no_grad():
        return _postprocess(model(pixel_values=images))


def _pytorch_detections(folder: Path, images: torch.Tensor, sampling: str) -> tuple:
    """Our PyTorch model of the folder (in the export's sampling), post-processed the same way."""
    with torch.no_grad():
        outputs = load_model(folder, sampling=sampling)(images)
    return _postprocess(SimpleNamespace(logits=outputs["pred_logits"], pred_boxes=outputs["pred_boxes"]))


def _onnx_detections(onnx_file: Path, images: torch.Tensor) -> tuple:
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    feed = {"images": images.numpy(), "orig_target_sizes": np.array([ORIGINAL_SIZE], dtype=np.int64)}
    labels, boxes, scores = session.run(None, feed)
    return labels[0], boxes[0], scores[0]


def _metadata(onnx_file: Path) -> ModelMetadata:
    return ModelMetadata.from_props({p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props})


@pytest.mark.parametrize("method", ["default", "discrete"])
def test_export_of_a_small_folder_gives_transformers_detections(method: str, tmp_path: Path) -> None:
    folder = save_hf_folder(tmp_path / f"tiny_{method}", tiny_hf_config(decoder_method=method))
    onnx_file = _export(folder, tmp_path / "out", method, "--topk", "30")  # transformers keeps num_queries
    images = _image(320)
    exported, reference = _onnx_detections(onnx_file, images), _transformers_detections(folder, images)
    diffs = match_detections(exported, reference, image_size=ORIGINAL_SIZE, atol=ATOL)
    print(f"tiny/{method}: ONNX vs transformers {diffs}")
    meta = _metadata(onnx_file)
    assert meta.class_names == TINY_CLASSES  # config.json's id2label
    assert meta.input_size == (320, 320)  # anchor_image_size
    assert meta.preset == "custom-r18vd" and meta.topk == 30


@pytest.mark.parametrize(("name", "method"), SLOW_EXPORTS)
def test_export_of_each_official_size_gives_transformers_detections(name: str, method: str, tmp_path: Path) -> None:
    """Three comparisons on one 640x640 image, each post-processed by transformers:

    * our PyTorch model of the folder against transformers, within 1e-4: the conversion;
    * the ONNX against its PyTorch model is the exporter's own verification (in the report it wrote): equal up to
      decisions that tie in float32, which it replays;
    * the ONNX against transformers directly: within 1e-4 for r18vd; deeper random networks drift further in
      ONNX Runtime's float32 kernels (about 2e-4 at r50vd, 1e-3 at r101vd, and discrete sampling flips pixels at
      rounding ties), so there the ONNX must be no farther from transformers than from its own PyTorch model.

    With discrete sampling, transformers gets the official float32 position embedding: its float64 one differs by
    about 1e-6, which pixel rounding turns into different pixels for a few queries (see hf_reference).
    """
    sampling = {"default": "bilinear", "discrete": "discrete"}[method]
    folder = save_hf_folder(tmp_path / name, official_hf_config(name, decoder_method=method))
    onnx_file = _export(folder, tmp_path / "out", method)
    meta = _metadata(onnx_file)
    assert meta.preset == name and meta.class_names == tuple(f"class{i}" for i in range(80))
    report = json.loads((tmp_path / "out" / f"{name}.verify.json").read_text())
    assert report["passed"] and report["verification"]["decisions"]["disagreements"] == 0

    images = _image(640)
    reference = _transformers_detections(folder, images, official_embedding=method == "discrete")
    ours = _pytorch_detections(folder, images, sampling)
    exported = _onnx_detections(onnx_file, images)
    conversion = match_detections(ours, reference, image_size=ORIGINAL_SIZE, atol=ATOL)
    to_reference = detection_deviation(exported, reference, image_size=ORIGINAL_SIZE)
    to_own = detection_deviation(exported, ours, image_size=ORIGINAL_SIZE)
    print(
        f"{name}/{method}: PyTorch vs transformers {conversion}; ONNX vs transformers {to_reference:.2e}, "
        f"ONNX vs its PyTorch model {to_own:.2e}"
    )
    assert to_reference <= to_own + ATOL
    if name == "r18vd":
        match_detections(exported, reference, image_size=ORIGINAL_SIZE, atol=ATOL)


def test_infer_runs_a_folder_on_the_torch_backend(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    results = tmp_path / "r.json"
    argv = [str(DATA_DIR / "rocket.jpg"), "--model", str(tiny_folder), "--json", str(results), "--conf", "0"]
    assert infer_cli.main(argv) == 0, capsys.readouterr().err
    entries = json.loads(results.read_text())
    assert entries and {e["category_id"] for e in entries} <= {0, 1, 2}


# ----------------------------------------------------------------------------------------------------------
# Bad folders: each is one line on stderr and exit status 2
# ----------------------------------------------------------------------------------------------------------


def _copy(tiny: Path, folder: Path, *, config: dict | None = None, tensors: dict | None = None) -> Path:
    """``tiny`` copied to ``folder``, with its config.json updated by ``config`` and tensors replaced by ``tensors``."""
    shutil.copytree(tiny, folder)
    if config is not None:
        path = folder / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    if tensors is not None:
        safetensors_torch.save_file(tensors, str(folder / "model.safetensors"))
    return folder


def _tensors(tiny: Path) -> dict[str, torch.Tensor]:
    return safetensors_torch.load_file(str(tiny / "model.safetensors"))


def _bad_folder(case: str, tiny: Path, tmp_path: Path) -> tuple[Path, str]:
    """A bad folder (or file) of ``case`` and the text its error line must hold."""
    bad = tmp_path / case.replace(" ", "_")
    tensors = _tensors(tiny)
    if case == "no config.json":
        bad.mkdir()
        safetensors_torch.save_file(tensors, str(bad / "model.safetensors"))
        return bad, "has no config.json"
    if case == "RT-DETR v1":
        RTDetrConfig().save_pretrained(bad)
        return bad, "describes RT-DETR (v1) (model_type 'rt_detr'); only RT-DETRv2"
    if case == "DETR":
        DetrConfig(use_timm_backbone=False).save_pretrained(bad)
        return bad, "describes DETR (model_type 'detr'); only RT-DETRv2"
    if case == "no heads":
        return _copy(tiny, bad, config={"architectures": ["RTDetrV2Model"]}), "no detection heads"
    if case == "missing tensors":
        kept = {k: v for k, v in tensors.items() if not k.startswith("model.decoder.layers.1.")}
        return _copy(tiny, bad, tensors=kept), "missing (23): model.decoder.layers.1.self_attn.{q,k,v}_proj.weight"
    if case == "extra tensors":
        extra = {"model.decoder.extra_head.weight": torch.zeros(2), "model.decoder.layers.2.fc1.bias": torch.zeros(128)}
        message = "unexpected (2): model.decoder.extra_head.weight, model.decoder.layers.2.fc1.bias"
        return _copy(tiny, bad, tensors={**tensors, **extra}), message
    if case == "shapes that do not fit":
        config = {"id2label": {str(i): f"c{i}" for i in range(5)}, "label2id": {f"c{i}": i for i in range(5)}}
        message = "shape mismatch (7): model.denoising_class_embed.weight [4, 64] vs [6, 64]"
        return _copy(tiny, bad, config=config), message
    if case == "eval_size":
        return _copy(tiny, bad, config={"eval_size": [320, 320]}), "eval_size=[320, 320], with which transformers drops"
    if case == "unsupported setting":
        return _copy(tiny, bad, config={"decoder_n_levels": 4}), "decoder_n_levels=4, which this package's RT-DETRv2"
    if case == "no weights":
        bad.mkdir()
        shutil.copy(tiny / "config.json", bad / "config.json")
        return bad, "no weights beside config.json"
    if case == "damaged weights":
        _copy(tiny, bad)
        path = bad / "model.safetensors"
        path.write_bytes(path.read_bytes()[:1000])
        return bad, "not a readable safetensors file"
    if case == "transformers file without config.json":
        bad.mkdir()
        shutil.copy(tiny / "model.safetensors", bad / "model.safetensors")
        return bad / "model.safetensors", "named as in transformers' RTDetrV2ForObjectDetection, but no config.json"
    raise AssertionError(case)


BAD_CASES = [
    "no config.json",
    "RT-DETR v1",
    "DETR",
    "no heads",
    "missing tensors",
    "extra tensors",
    "shapes that do not fit",
    "eval_size",
    "unsupported setting",
    "no weights",
    "damaged weights",
    "transformers file without config.json",
]


def _one_error_line(capsys: pytest.CaptureFixture, prog: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_folder_is_one_line_and_exit_2_for_export(
    case: str, tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad, message = _bad_folder(case, tiny_folder, tmp_path)
    capsys.readouterr()
    assert export_cli.main([str(bad), "-o", str(tmp_path / "out")]) == 2
    line = _one_error_line(capsys, "rtdetr-export")
    assert message in line, line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("case", ["no config.json", "RT-DETR v1", "missing tensors"])
def test_bad_folder_is_one_line_and_exit_2_for_infer_and_eval(
    case: str, tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from rtdetr_deploy.data import SyntheticConfig, generate_synthetic

    bad, message = _bad_folder(case, tiny_folder, tmp_path)
    if case == "no config.json":  # the runtime tells a model folder from its config.json before loading anything
        message = "or a transformers model folder with config.json, got the folder"
    data = tmp_path / "data"
    generate_synthetic(data, SyntheticConfig(seed=0, num_train=1, num_val=2, image_size=64, video_frames=0))
    capsys.readouterr()
    assert infer_cli.main([str(DATA_DIR / "rocket.jpg"), "--model", str(bad)]) == 2
    assert message in _one_error_line(capsys, "rtdetr-infer")
    assert eval_cli.main([str(bad), "--data", str(data), "--no-progress"]) == 2
    assert message in _one_error_line(capsys, "rtdetr-eval")


def test_bench_takes_a_model_folder_where_a_pth_goes(tiny_folder: Path, tmp_path: Path) -> None:
    from rtdetr_deploy.bench.config import BenchConfig

    BenchConfig(model=tiny_folder).check_files()  # accepted; planning its cases is bench.cases' part
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match=r"cannot benchmark .plain.: expected .* or a transformers model folder"):
        BenchConfig(model=tmp_path / "plain")
