"""COCO AP of an exported ONNX, computed apart from rtdetr-deploy: OpenCV, ONNX Runtime and pycocotools only.

A second opinion on ``rtdetr-eval``: nothing here imports the package. The ONNX's official deploy I/O is used as
any deploy script would use it: images read with OpenCV, converted to RGB, resized to the graph's input size with
``cv2.INTER_LINEAR``, scaled to [0, 1], fed with their original (width, height); the graph's ``labels``,
``boxes`` and ``scores`` are mapped back to the category ids through the model's ``category_ids`` metadata
(the one fact a deploy script must be told) and scored by pycocotools.

    python -m benchmarks.independent_eval model.onnx annotations.json images_dir
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort


def predictions(onnx_path: Path, annotations: dict, images_dir: Path) -> list[dict]:
    """COCO results of every image of ``annotations`` (no score threshold)."""
    props = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    category_ids = json.loads(props["category_ids"])
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    _, _, height, width = session.get_inputs()[0].shape
    results = []
    for image in annotations["images"]:
        bgr = cv2.imread(str(images_dir / image["file_name"]), cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(cv2.resize(bgr, (width, height), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
        pixels = (rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        sizes = np.array([[bgr.shape[1], bgr.shape[0]]], dtype=np.int64)
        labels, boxes, scores = session.run(None, {"images": pixels, "orig_target_sizes": sizes})
        for label, (x1, y1, x2, y2), score in zip(labels[0], boxes[0], scores[0], strict=True):
            results.append(
                {
                    "image_id": image["id"],
                    "category_id": category_ids[int(label)],
                    "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                    "score": float(score),
                }
            )
    return results


def coco_ap(annotations: dict, results: list[dict]) -> dict[str, float]:
    """pycocotools' box AP, AP50 and AP75."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = annotations
        ground_truth.createIndex()
        evaluator = COCOeval(ground_truth, ground_truth.loadRes(results), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {"AP": float(evaluator.stats[0]), "AP50": float(evaluator.stats[1]), "AP75": float(evaluator.stats[2])}


def evaluate(onnx_path: Path, annotation_file: Path, images_dir: Path) -> dict[str, float]:
    annotations = json.loads(Path(annotation_file).read_text())
    return coco_ap(annotations, predictions(Path(onnx_path), annotations, Path(images_dir)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx", type=Path)
    parser.add_argument("annotations", type=Path)
    parser.add_argument("images", type=Path)
    args = parser.parse_args(argv)
    print(json.dumps(evaluate(args.onnx, args.annotations, args.images)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
