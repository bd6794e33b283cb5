"""Names and ids that survive: an official-layout checkpoint without names exports COCO's, ``--names`` on
export/infer/eval/bench with each source kind, and the refusals (count mismatch, an exported model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from rtdetr_deploy.cli import bench, export, infer  # noqa: E402
from rtdetr_deploy.cli import eval as eval_cli  # noqa: E402

# COCO 2017's category ids: 1..90 without these ten (the dataset's own category list).
COCO_IDS = sorted(set(range(1, 91)) - {12, 26, 29, 30, 45, 66, 68, 69, 71, 83})


def _official_layout(path: Path, preset: str, *, size: int) -> Path:
    """An 80-class checkpoint as the official release writes it (``ema.module`` and ``model``, no names), whose
    class heads favour label 79 (COCO's ``toothbrush``, category id 90) for every query."""
    from helpers import randomize_heads

    from rtdetr_deploy.models import build_model, get_preset

    torch.manual_seed(0)
    model = build_model(get_preset(preset).with_eval_size((size, size)), num_classes=80)
    randomize_heads(model)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "score_head" in name and name.endswith("bias"):
                param.fill_(-5.0)
                param[79] = 5.0
    state = model.state_dict()
    torch.save({"ema": {"module": state, "updates": 1}, "model": state, "last_epoch": 119}, path)
    return path


@pytest.fixture(scope="module")
def coco80(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A COCO-format folder with COCO's 80 categories: 2 val images of 160 px with one box each."""
    from rtdetr_deploy.coco.names import COCO_CLASS_NAMES

    root = tmp_path_factory.mktemp("coco80")
    (root / "annotations").mkdir()
    (root / "images" / "val").mkdir(parents=True)
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in (1, 2):
        cv2.imwrite(str(root / "images" / "val" / f"{i}.jpg"), rng.integers(0, 255, (160, 160, 3), dtype=np.uint8))
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 160, "height": 160})
        annotations.append(
            {
                "id": i,
                "image_id": i,
                "category_id": (1, 90)[i - 1],
                "bbox": [20, 30, 60, 50],
                "area": 3000,
                "iscrowd": 0,
            }
        )
    categories = [{"id": c, "name": n} for c, n in zip(COCO_IDS, COCO_CLASS_NAMES, strict=True)]
    doc = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations" / "instances_val.json").write_text(json.dumps(doc))
    return root


def _run(main, argv: list, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:  # noqa: ANN001 - a command's main
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _metadata(path: Path) -> dict[str, object]:
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return {"class_names": json.loads(props["class_names"]), "category_ids": json.loads(props["category_ids"])}


@pytest.mark.parametrize(
    ("preset", "size"), [("tiny", 128), pytest.param("r18vd", 320, marks=pytest.mark.slow)], ids=["tiny", "r18vd"]
)
def test_official_layout_checkpoint_exports_infers_and_evaluates_with_coco_ids(
    preset, size, coco80, tmp_path, capsys
) -> None:
    weights = _official_layout(tmp_path / f"official_{preset}.pth", preset, size=size)
    code, out, err = _run(export.main, [weights, "-o", tmp_path / "out", "--imgsz", size], capsys)
    assert code == 0, err
    assert sum("Classes: COCO's 80 names" in line for line in out.splitlines()) == 1
    model = tmp_path / "out" / f"official_{preset}.onnx"
    meta = _metadata(model)
    assert meta["class_names"][:3] == ["person", "bicycle", "car"] and meta["class_names"][-1] == "toothbrush"
    assert meta["category_ids"] == COCO_IDS

    results = tmp_path / "results.json"
    code, _, err = _run(
        infer.main, [coco80 / "images" / "val", "--model", model, "--conf", "0.5", "--json", results], capsys
    )
    assert code == 0, err
    ids = {r["category_id"] for r in json.loads(results.read_text())}
    assert ids == {90}  # label 79 written as COCO's id for toothbrush, not as 79

    code, out, err = _run(eval_cli.main, [model, "--data", coco80, "--no-progress"], capsys)
    assert code == 0, err
    assert f"official_{preset}.onnx" in out


@pytest.mark.parametrize("kind", ["txt", "json", "yaml", "coco"])
def test_names_source_kinds_reach_the_model(kind, tiny_checkpoint, tmp_path) -> None:
    from rtdetr_deploy.coco.names import read_names
    from rtdetr_deploy.models import load_model

    expected = {"txt": ((0, 1, 2), "a\nb\nc\n"), "yaml": ((0, 1, 2), "names: [a, b, c]\n")}
    if kind == "yaml":
        pytest.importorskip("yaml", reason="YAML name lists need pyyaml")
    if kind == "coco":
        with pytest.raises(ValueError, match="lists 80 classes, but the model .*tiny.pth has 3"):
            load_model(tiny_checkpoint, names=read_names("coco"))
        return
    source = tmp_path / f"names.{kind}"
    if kind == "json":
        cats = [{"id": 30, "name": "c"}, {"id": 10, "name": "a"}, {"id": 20, "name": "b"}]
        source.write_text(json.dumps({"categories": cats}))
        ids = (10, 20, 30)
    else:
        ids, text = expected[kind]
        source.write_text(text)
    model = load_model(tiny_checkpoint, names=read_names(source))
    assert model.info.class_names == ("a", "b", "c")
    assert model.info.category_ids == ids
    assert str(source) in model.info.names_from


@pytest.fixture(scope="module")
def relabelled(tiny_checkpoint, tmp_path_factory) -> tuple[Path, Path]:  # noqa: ANN001 - fixtures
    """A COCO annotation file naming the tiny checkpoint's 3 classes anew, and the export made with it."""
    folder = tmp_path_factory.mktemp("relabelled")
    names = folder / "instances_custom.json"
    cats = [{"id": 41, "name": "helmet"}, {"id": 42, "name": "vest"}, {"id": 47, "name": "boot"}]
    names.write_text(json.dumps({"images": [], "annotations": [], "categories": cats}))
    assert export.main([str(tiny_checkpoint), "-o", str(folder), "--names", str(names)]) == 0
    return names, folder / "tiny.onnx"


def test_export_records_names_in_metadata(relabelled) -> None:
    _, model = relabelled
    assert _metadata(model) == {"class_names": ["helmet", "vest", "boot"], "category_ids": [41, 42, 47]}


def test_infer_names_relabel_a_checkpoint(relabelled, tiny_checkpoint, coco80, tmp_path, capsys) -> None:
    names, _ = relabelled
    results = tmp_path / "r.json"
    argv = [coco80 / "images" / "val", "--model", tiny_checkpoint, "--conf", "0", "--json", results, "--names", names]
    code, _, err = _run(infer.main, argv, capsys)
    assert code == 0, err
    assert {r["category_id"] for r in json.loads(results.read_text())} <= {41, 42, 47}


@pytest.fixture(scope="module")
def five_names(tmp_path_factory) -> Path:  # noqa: ANN001 - a fixture
    path = tmp_path_factory.mktemp("five") / "five.txt"
    path.write_text("a\nb\nc\nd\ne\n")
    return path


def _one_line_error(code: int, out: str, err: str, prog: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    return lines[0]


@pytest.mark.parametrize("command", ["export", "infer", "eval", "bench"])
def test_count_mismatch_is_refused_naming_both_counts(command, five_names, tiny_checkpoint, coco80, tmp_path, capsys):
    images = coco80 / "images" / "val"
    argv = {
        "export": (export.main, [tiny_checkpoint, "-o", tmp_path]),
        "infer": (infer.main, [images, "--model", tiny_checkpoint]),
        "eval": (eval_cli.main, [tiny_checkpoint, "--data", coco80, "--no-progress"]),
        "bench": (bench.main, [tiny_checkpoint, "--iters", 1, "--warmup", 0, "--no-peak"]),
    }
    main, args = argv[command]
    line = _one_line_error(*_run(main, [*args, "--names", five_names], capsys), f"rtdetr-{command}")
    assert "five.txt lists 5 classes, but the model" in line and line.endswith("has 3")
    if command == "export":
        assert not list(tmp_path.glob("*.onnx"))


@pytest.mark.parametrize("command", ["infer", "eval", "bench"])
def test_names_refused_for_an_exported_model(command, relabelled, coco80, capsys) -> None:
    names, model = relabelled
    argv = {
        "infer": (infer.main, [coco80 / "images" / "val", "--model", model]),
        "eval": (eval_cli.main, [model, "--data", coco80, "--no-progress"]),
        "bench": (bench.main, [model, "--iters", 1, "--no-peak"]),
    }
    main, args = argv[command]
    line = _one_line_error(*_run(main, [*args, "--names", names], capsys), f"rtdetr-{command}")
    assert "--names applies to checkpoints" in line
