"""The embedded synthetic dataset and video: deterministic, COCO-valid, and as varied as promised."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from rtdetr_deploy.data import CATEGORIES, SyntheticConfig, ensure_synthetic, generate_synthetic

SMALL = SyntheticConfig(seed=3, num_train=60, num_val=6, image_size=64, video_frames=12)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory):
    return generate_synthetic(tmp_path_factory.mktemp("synthetic"), SMALL)


def _coco(path: Path) -> dict:
    return json.loads(path.read_text())


def test_same_seed_gives_identical_files_and_another_seed_differs(generated, tmp_path):
    again = generate_synthetic(tmp_path / "again", SyntheticConfig(seed=3, num_train=4, num_val=2, image_size=64))
    first = sorted(generated.train_images.iterdir())[:4]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in sorted(again.train_images.iterdir())]
    other = generate_synthetic(tmp_path / "other", SyntheticConfig(seed=4, num_train=4, num_val=2, image_size=64))
    assert first[0].read_bytes() != sorted(other.train_images.iterdir())[0].read_bytes()
    # Images do not depend on how many are generated: the first 4 of 60 are the 4 of 4.
    ann_small = [a for a in _coco(again.train_annotations)["annotations"]]
    ann_big = [a for a in _coco(generated.train_annotations)["annotations"] if a["image_id"] <= 4]
    assert ann_small == ann_big


def test_coco_files_are_valid_with_non_contiguous_categories(generated):
    for path, count in ((generated.train_annotations, 60), (generated.val_annotations, 6)):
        coco = _coco(path)
        assert [c["id"] for c in coco["categories"]] == list(CATEGORIES) == [3, 7, 12, 18, 25]
        assert len(coco["images"]) == count
        images = {i["id"]: i for i in coco["images"]}
        for image in coco["images"]:
            file = path.parents[1] / "images" / path.stem.split("_")[1] / image["file_name"]
            decoded = cv2.imread(str(file))
            assert decoded.shape[:2] == (image["height"], image["width"])
            assert int(Path(image["file_name"]).stem) == image["id"]  # the runtime's image id for numbered files
        for ann in coco["annotations"]:
            x, y, w, h = ann["bbox"]
            image = images[ann["image_id"]]
            assert w > 0 and h > 0 and x >= 0 and y >= 0
            assert x + w <= image["width"] and y + h <= image["height"]
            assert 0 < ann["area"] <= w * h and ann["category_id"] in CATEGORIES


def test_the_set_holds_crowds_empty_images_occlusion_and_all_sizes(generated):
    coco = _coco(generated.train_annotations)
    anns = coco["annotations"]
    assert any(a["iscrowd"] for a in anns)
    annotated = {a["image_id"] for a in anns}
    assert any(i["id"] not in annotated for i in coco["images"]), "some images hold no object"
    assert {a["category_id"] for a in anns} == set(CATEGORIES)
    # Area relative to the image (these are 64-px images): small, medium and large objects all occur.
    rel = [a["area"] / (i["width"] * i["height"]) for a in anns for i in coco["images"] if i["id"] == a["image_id"]]
    assert min(rel) < 0.01 and max(rel) > 0.1
    # Occlusion: visible area below the box area by a wide margin somewhere, and overlapping boxes.
    assert any(a["area"] < 0.45 * a["bbox"][2] * a["bbox"][3] for a in anns if not a["iscrowd"])


def test_video_plays_with_its_frame_count_and_has_ground_truth(generated):
    capture = cv2.VideoCapture(str(generated.video))
    frames = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames += 1
        assert frame.shape == (64, 96, 3)
    assert frames == SMALL.video_frames
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(25.0)
    coco = _coco(generated.video_annotations)
    assert [i["id"] for i in coco["images"]] == list(range(SMALL.video_frames))
    assert {a["image_id"] for a in coco["annotations"]} == set(range(SMALL.video_frames))


def test_ensure_reuses_a_complete_set_and_regenerates_on_other_settings(tmp_path):
    config = SyntheticConfig(seed=0, num_train=2, num_val=1, image_size=64, video_frames=0)
    paths = ensure_synthetic(tmp_path, config)
    assert paths.video is None
    stamp = paths.train_annotations.stat().st_mtime_ns
    assert ensure_synthetic(tmp_path, config).train_annotations.stat().st_mtime_ns == stamp
    bigger = ensure_synthetic(tmp_path, SyntheticConfig(seed=0, num_train=3, num_val=1, image_size=64, video_frames=0))
    assert len(_coco(bigger.train_annotations)["images"]) == 3


def test_default_root_lives_in_the_cache(monkeypatch, tmp_path):
    from rtdetr_deploy.data import default_root

    monkeypatch.setenv("RTDETR_DEPLOY_CACHE", str(tmp_path))
    assert default_root(SyntheticConfig()).parent == tmp_path / "synthetic"


def test_command_line_writes_a_copy(tmp_path):
    command = [sys.executable, "-m", "rtdetr_deploy.data", str(tmp_path / "out"), "--num-train", "2", "--num-val", "1"]
    result = subprocess.run([*command, "--image-size", "64", "--video-frames", "3"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "synthetic.json").is_file()
    bad = subprocess.run([*command, "--image-size", "8"], capture_output=True, text=True)
    assert bad.returncode == 1 and "image_size must be at least 64" in bad.stderr


def test_rendering_is_bounded(generated):
    image = cv2.imread(str(next(generated.val_images.iterdir())))
    assert image.dtype == np.uint8 and image.std() > 5, "textured, not flat"
