"""COCO annotations: label remapping, crowd and invalid boxes, empty images, dataset layouts, every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rtdetr_deploy.coco import find_coco_split, load_coco  # noqa: E402
from rtdetr_deploy.train.dataset import CocoDetection  # noqa: E402

CATEGORIES = [{"id": 90, "name": "toaster"}, {"id": 1, "name": "person"}, {"id": 44, "name": "bottle"}]


def _write_set(root: Path, annotations: list[dict], *, images: int = 3, size=(40, 60)) -> tuple[Path, Path]:
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(1, images + 1):
        Image = pytest.importorskip("cv2")
        Image.imwrite(str(folder / f"{i:04d}.png"), np.full((size[0], size[1], 3), 30 * i, np.uint8))
        entries.append({"id": i, "file_name": f"{i:04d}.png", "height": size[0], "width": size[1]})
    ann = root / "instances.json"
    ann.write_text(json.dumps({"images": entries, "annotations": annotations, "categories": CATEGORIES}))
    return ann, folder


def _ann(i, image_id, category_id, bbox, iscrowd=0):
    return {"id": i, "image_id": image_id, "category_id": category_id, "bbox": bbox, "iscrowd": iscrowd, "area": 1}


def test_category_ids_map_to_sorted_contiguous_labels_and_crowds_are_left_out(tmp_path):
    anns = [
        _ann(1, 1, 90, [10, 5, 20, 10]),
        _ann(2, 1, 1, [0, 0, 5, 5]),
        _ann(3, 1, 44, [30, 20, 10, 10], iscrowd=1),
        _ann(4, 2, 44, [1, 2, 3, 4]),
    ]
    coco = load_coco(*_write_set(tmp_path, anns))
    assert coco.category_ids == (1, 44, 90)
    assert coco.class_names == ("person", "bottle", "toaster")
    first, second, third = coco.images
    assert first.labels.tolist() == [2, 0]
    np.testing.assert_allclose(first.boxes_xyxy, [[10, 5, 30, 15], [0, 0, 5, 5]])
    assert second.labels.tolist() == [1]
    assert third.labels.tolist() == [] and third.boxes_xyxy.shape == (0, 4)


def test_boxes_are_clamped_and_degenerate_ones_dropped_when_loaded(tmp_path):
    anns = [
        _ann(1, 1, 1, [-10, -10, 30, 30]),  # clamped to [0, 0, 20, 20]
        _ann(2, 1, 1, [70, 10, 10, 10]),  # entirely right of the 60-px image
        _ann(3, 1, 1, [10, 10, 0, 5]),  # zero width
        _ann(4, 1, 44, [50, 30, 20, 20]),  # clamped to [50, 30, 60, 40]
    ]
    coco = load_coco(*_write_set(tmp_path, anns))
    dataset = CocoDetection(coco, size=(32, 64), train=False)
    image, target = dataset[0]
    assert image.shape == (3, 32, 64) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert target["labels"].tolist() == [0, 1]
    expected_cxcywh = torch.tensor([[10 / 60, 10 / 40, 20 / 60, 20 / 40], [55 / 60, 35 / 40, 10 / 60, 10 / 40]])
    torch.testing.assert_close(target["boxes"], expected_cxcywh)
    assert target["orig_size"].tolist() == [60, 40]
    assert int(target["image_id"]) == 1
    _, empty = dataset[2]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (
            lambda d: d.update(annotations=[_ann(1, 1, 5, [0, 0, 4, 4])]),
            ValueError,
            "category_id 5, not in 'categories'",
        ),
        (lambda d: d.update(annotations=[_ann(1, 99, 1, [0, 0, 4, 4])]), ValueError, "image_id 99, not in 'images'"),
        (lambda d: d.update(annotations=[_ann(1, 1, 1, [0, 0, 4])]), ValueError, "expected \\[x, y, width, height\\]"),
        (lambda d: d.update(images=[]), ValueError, "empty \\(no images\\)"),
        (lambda d: d.update(categories=[]), ValueError, "no categories"),
        (lambda d: d.pop("images"), ValueError, "not a COCO detection file"),
        (lambda d: d["images"].append({"id": 7, "file_name": "gone.png"}), FileNotFoundError, "e.g. gone.png"),
        (lambda d: d["images"].append(dict(d["images"][0])), ValueError, "duplicate image id 1"),
    ],
)
def test_bad_annotation_files_raise_one_line_errors(tmp_path, mutate, error, match):
    ann, folder = _write_set(tmp_path, [])
    data = json.loads(ann.read_text())
    mutate(data)
    ann.write_text(json.dumps(data))
    with pytest.raises(error, match=match) as info:
        load_coco(ann, folder)
    assert "\n" not in str(info.value)


def test_missing_files_and_invalid_json(tmp_path):
    ann, folder = _write_set(tmp_path, [])
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        load_coco(tmp_path / "nope.json", folder)
    with pytest.raises(FileNotFoundError, match="images folder not found"):
        load_coco(ann, tmp_path / "nope")
    ann.write_text('{"images": [}')
    with pytest.raises(ValueError, match="invalid JSON .* line 1"):
        load_coco(ann, folder)


def test_find_coco_split_knows_the_common_layouts(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text("{}")
    (tmp_path / "val2017").mkdir()
    assert find_coco_split(tmp_path, "val") == (tmp_path / "annotations/instances_val2017.json", tmp_path / "val2017")
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "_annotations.coco.json").write_text("{}")
    assert find_coco_split(tmp_path, "train") == (tmp_path / "train/_annotations.coco.json", tmp_path / "train")
    with pytest.raises(FileNotFoundError, match="no val annotations .*looked for annotations/instances_val.json"):
        find_coco_split(tmp_path / "train", "val")
    (tmp_path / "annotations" / "instances_test.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="images folder for test not found"):
        find_coco_split(tmp_path, "test")
