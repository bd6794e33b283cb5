"""The measured compatibility matrix: every target engine, both samplings, written to ``docs/targets.md``.

For each model (the shipped trained tiny; ``--models tiny,r18`` adds the official-layout R18: the trained reference
of docs/frontier.md with ``--r18-reference DIR``, else random weights) and each sampling (discrete, bilinear), with
the weights trained (or fine-tuned) for that sampling, exports the verified ONNX with the project's exporter, then
converts it to every target (``export.targets.convert_target``: MNN, LiteRT via onnx2tf, RKNN rk3588 FP16 in
rknn-toolkit2's simulator, ncnn via pnnx from the model itself, bilinear only) and records, per target: whether it
converts (else the converter's error), whether it runs, the largest difference of its decided top-20 detections to
PyTorch's (score, box px) on the verification images, the COCO AP on the synthetic validation split and its
difference to ONNX Runtime's (trained weights only), and the p50 latency of ``Backend.infer`` on one preprocessed
image on this CPU (none for the simulator). ONNX Runtime's own row is the reference. Nothing in the table is typed
by hand; the machine is recorded.

    python benchmarks/targets.py --onnx2tf-python ENV/onnx2tf/bin/python --rknn-python ENV/rknn/bin/python \
        --ncnn-python ENV/pnnx/bin/python
    python benchmarks/targets.py --models tiny,r18 --r18-reference runs/r18_reference ...   # docs/targets.md
    python benchmarks/targets.py --targets mnn --runs 5          # a quick run without the separate interpreters
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from rtdetr_deploy.agreement import compare_detections
from rtdetr_deploy.atomic import atomic_path
from rtdetr_deploy.bench.device import describe_device
from rtdetr_deploy.bench.report import device_line
from rtdetr_deploy.coco import coco_box_metrics
from rtdetr_deploy.eval.evaluate import evaluate_model, load_eval_data
from rtdetr_deploy.export.config import ExportConfig
from rtdetr_deploy.export.graphs import run_graph
from rtdetr_deploy.export.pipeline import export
from rtdetr_deploy.export.target_config import TargetsConfig
from rtdetr_deploy.export.targets import convert_target
from rtdetr_deploy.export.verify import verification_images
from rtdetr_deploy.runtime import open_backend
from rtdetr_deploy.runtime.onnxruntime_backend import read_onnx_metadata
from rtdetr_deploy.runtime.preprocess import preprocess
from rtdetr_deploy.runtime.sources import read_image
from rtdetr_deploy.tables import markdown_table

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "rtdetr_deploy" / "data" / "weights"
# Each sampling's rows use the weights trained (or fine-tuned) with that sampling.
TINY = {"bilinear": WEIGHTS / "tiny_synthetic.pth", "discrete": WEIGHTS / "tiny_synthetic_discrete.pth"}
TARGET_FILES = {
    "mnn": "model.mnn",
    "litert": "model.tflite",
    "rknn": "model.rk3588-fp16.rknn",
    "ncnn": "model.ncnn",
}
OUTPUTS = ("labels", "boxes", "scores")


USAGE = """
## Using each target

Every target is converted from the verified FP32 ONNX (ncnn: from the model, see its section) by `rtdetr-export`
and checked against ONNX Runtime on the export's verification images before anything is written (FP32 engines: each
decided top-20 detection found again with its score within 1e-3 and its box within 1 px; RKNN FP16: 0.1 and 4 px).
Beside each engine file lies a `.json` sidecar with the model's metadata (input size, classes, preprocessing; in
the `.ncnn` folder, `model.json`); `rtdetr-infer`, `rtdetr-bench` and `rtdetr-eval` pick the backend by the file's
suffix. Export fixed batch 1 (the default).

### MNN (`.mnn`, backend `mnn`)
```
pip install 'rtdetr-deploy[mnn]'
rtdetr-export best.pth --mnn                 # best.onnx, best.mnn, best.mnn.json
rtdetr-infer images/ --model best.mnn
```
MNN's own converter command imports a usage-logging module that runs `pip install -U aliyun-log-python-sdk`
through the first `pip` on PATH and sends a record of each conversion over the network. The exporter never
imports it: it calls the compiled converter underneath in a child interpreter whose PATH holds no `pip` and
whose pip may reach no index, so an export changes nothing in your environment (tested).

### LiteRT / TensorFlow Lite (`.tflite`, backend `litert`)
```
python3 -m venv /opt/onnx2tf && /opt/onnx2tf/bin/pip install onnx2tf tensorflow tf-keras onnx-graphsurgeon \\
    sng4onnx onnxsim ai-edge-litert psutil 'numpy<2'
pip install 'rtdetr-deploy[litert]'          # the runtime (ai-edge-litert) in the project's environment
rtdetr-export best.pth --tflite --tflite-python /opt/onnx2tf/bin/python    # or RTDETR_ONNX2TF_PYTHON
```
onnx2tf pins TensorFlow, so it runs in an interpreter of its own. `Erf` (exact GELU) is replaced by onnx2tf's
approximation (`-rtpo Erf`) so that the file needs no Flex delegate. The matrix shows whether the result is
correct; an export whose LiteRT detections differ from ONNX Runtime's fails and writes nothing.

What made the converted file correct (onnx2tf 1.28.8, TensorFlow 2.19): onnx2tf guesses each tensor's layout, and
two patterns of the earlier graph fooled it, so the file ran and none of its detections was right. Both are now
the exported graph for every target (see [the portable graph](portable-graph.md)): self-attention is traced
batch-first instead of through `nn.MultiheadAttention`'s sequence-first transposes, and the decoder joins its
levels channel-first and transposes once, so no square `[B, H*W, D]` transpose appears where a level has as many
pixels as channels. Found with onnx2tf's own per-node comparison against ONNX Runtime (`-cotof`): after the two
changes every one of its 512 compared tensors matches. Before conversion the exporter still turns the anchor
mask's `Where(mask, x, 0)` back into `Mul(x, mask)` (onnx2tf fails on that `Where`).

Bilinear graphs (`GridSample`) still convert wrongly with trained weights (see the matrix: the tiny finds 39% of
the detections again, AP 0.637 against 0.738; the trained R18 1%, AP 0.025 against 0.569), although the R18 with
random weights, whose sampling offsets stay near zero, once agreed; the `GridSample` translation was not traced
further, and `rtdetr-export --tflite` refuses such a file (its check against ONNX Runtime fails).
The default discrete graph is the one to use for LiteRT: it has no `GridSample` for onnx2tf to translate.

### RKNN (`.rknn`, backend `rknn`, Rockchip NPUs)
```
python3.11 -m venv /opt/rknn && /opt/rknn/bin/pip install rknn-toolkit2==2.5.0     # pins old onnx/numpy/torch
rtdetr-export best.pth --rknn rk3588 --rknn-python /opt/rknn/bin/python            # or RTDETR_RKNN_PYTHON
rtdetr-export best.pth --rknn rk3588 --rknn-precision int8 --calib images/ --rknn-python /opt/rknn/bin/python
```
The conversion runs `rtdetr_deploy/export/rknn_driver.py` in the toolkit's interpreter (never imported into
ours) and verifies the file in rknn-toolkit2's x86 simulator. On the board, the `rknn` backend runs the file
through rknn-toolkit-lite2 (`pip install rknn-toolkit-lite2` on the board); **that backend is untested here**:
the project's machines are x86 without an NPU.

FP16 moves the discrete sampling locations. In the matrix, the discrete fine-tune of the tiny on rk3588 FP16 finds
all of PyTorch's 80 decided top-20 detections with boxes within 1.8 px and keeps its AP (-0.0001), but one score
moves by 0.18 (> 0.1), so `rtdetr-export tiny_synthetic_discrete.pth --rknn rk3588` refuses the file; the trained
R18's discrete file: 99%, scores 0.46, boxes 4.7 px, AP -0.005. The bilinear-trained tiny exported with discrete
sampling (AP 0.20, the earlier matrix rows): 95%, 0.038, 5.1 px. Bilinear files pass (tiny: 0.014, 0.48 px, AP
+0.0012; R18: 0.006, 0.6 px, AP +0.0008).

These differences come from how sharply the trained checkpoints react to a sampling location crossing a rounding
boundary, not from an engine fault, measured with `python -m benchmarks.discrete_conditioning
tiny_synthetic_discrete.pth runs/r18_reference/discrete/best.pth` (`benchmarks/results/discrete_conditioning.md`):
in PyTorch, every location moved by +-1e-5 (image units) changes 6 of the tiny's 25,600 gathered pixels on the 4
verification scenes and moves a decided score by 0.18 with boxes 1.2 px: the RKNN figures. For the trained R18,
+-1e-6 changes 11 of 345,600 pixels and moves a score by 4.9e-3 with boxes 0.31 px, which is exactly what MNN
(FP32) shows for it in the matrix (5.1e-3, 0.31 px): MNN computes the locations in another float order, so
`rtdetr-export best.pth --mnn` of the trained discrete R18 is refused by the FP32 rule (1e-3) although its AP is
ONNX Runtime's to 1e-5. A fixed score tolerance cannot judge a discrete graph on every checkpoint; the bilinear
graphs, where sampling is continuous, keep the tight rules.
The tiny's largest level has 32 x 32 = 1,024 pixels, so its flat index
was exact in FP16 before it became integer arithmetic: these figures did not change with it.
There is no higher-precision path for those locations in rknn-toolkit2 2.5.0 (measured with the toolkit's debug
log and one build per setting on the discrete tiny): of its `float_dtype` values, `tfloat32` stops the rk3588
build ("Can not support request type") and `bfloat16` holds fewer mantissa bits than FP16; the ops the toolkit
places on the CPU (the index's `Floor` and `Cast`) run in FP16 too; `op_target`, which would move ops between NPU and
CPU, refused every key tried (ONNX node names, output names and `Type:name`, also for a plain encoder `Conv`), so
the index arithmetic cannot even be moved; `w16a16i_dfp` (16-bit integer activations) stops the build on rk3588
with unsupported tensor types and `w8a16` is not offered for rk3588. Held in FP16, the sampling locations alone
move 0.6 % of the sampling points to the neighbouring pixel (0.9 % at the 32 x 32 level; FP32 locations rounded
to FP16 in PyTorch on the four photographs; the trained tiny, its discrete fine-tune and the trained R18 alike),
before any FP16 error upstream of them; the box differences above are what that costs the trained tiny.

RKNN INT8 (w8a8, `--rknn-precision int8 --calib DIR`, 50 synthetic training images) of the bilinear tiny builds
and runs in the simulator but is unusable: it finds none of ONNX Runtime's 80 decided top-20 detections on the
verification images and its AP on the synthetic validation split is 0.035 against 0.738. Two faults, measured: the
`orig_target_sizes` input is quantized too, so boxes come back about 0.65 times their size (sizes outside the
calibration's range clip); with that input held at the model's input size and the boxes scaled on the host, AP is
still 0.034, so the w8a8 quantization of the transformer itself loses the detections. Until now the export waved
INT8 engine files through unjudged; they are now judged by the INT8 rules and this one is refused (exit 1, nothing
written). A usable RKNN INT8 would need the toolkit's hybrid quantization (sensitive layers kept in FP16); not built.

Official-layout R18 with random weights at 640 (not in the matrix above; asking for r18 adds it), measured
with `rtdetr-export r18vd_random.pth --rknn rk3588 --rknn-python ...` on the same machine: the FP16 file builds,
runs in the simulator and agrees with ONNX Runtime (the whole export 156 s on the loaded machine, of which 50 s the
build and the simulator run of the 4 verification scenes, 1.4 to 2.4 s per scene). Its random heads give flat
scores (the top-20 within 1e-4 of each other), so no detection is decided: the sorted top-20 scores agree within
6.5e-5, and the ONNX Runtime top-20 detections found again among the simulator's (same label, IoU >= 0.9; 1 to 5
per scene) within 1e-4 in score and 0.5 px. The earlier simulator failure, `GatherElements` out of range in the
first decoder layer, came from the flat index `y * W + x` computed in float: FP16 holds whole numbers exactly only
up to 2,048, the largest level has 80 x 80 = 6,400 pixels, and the last pixel's index 6,399 rounds to 6,400, past
the end of the map. The flat index is now int64 arithmetic. Checked with the R18 whose sampling offsets send every
location into the bottom-right corner: the graph with the float flat index fails in the simulator (`GatherElements`
in `layers.0/cross_attn`), the current graph builds, runs and agrees. A random checkpoint whose locations never
reach the last pixels ran with the float index too, so it does not show the fault.
"""


NCNN = """
### ncnn (`.ncnn` folder, backend `ncnn`)
```
python3 -m venv /opt/pnnx && /opt/pnnx/bin/pip install pnnx     # ncnn's converter, with a torch of its own
pip install 'rtdetr-deploy[ncnn]'            # the runtime (ncnn) in the project's environment
rtdetr-export best.pth --sampling bilinear --ncnn --ncnn-python /opt/pnnx/bin/python   # or RTDETR_NCNN_PYTHON
rtdetr-infer images/ --model best.ncnn
```
ncnn has no TopK or GatherElements layer, so the published ONNX does not convert. `--ncnn` traces the model again
as two graphs around its query selection and converts each with pnnx (run in its own interpreter): the encoder
(`images` -> memory, output memory and each position's best class logit) and the decoder (the selected queries,
their anchors and the memory -> raw logits and cxcywh boxes). The `ncnn` backend runs the encoder, selects the
queries on the host in numpy, runs the decoder and takes the top-k on the host, as for an `--outputs raw` graph.
`best.ncnn/` holds both graphs (`.param`/`.bin`), the anchors (`anchors.npy`) and the sidecar (`model.json`).
The decoder's deformable attention is rewritten per head (one `GridSample` per head and level, no tensor above
rank 4, the weighted sum as a MatMul) because pnnx maps the model's form wrongly for ncnn; the export fails if
pnnx leaves an operator unconverted or writes a `Reduction` over no axis (its form of a `ReduceSum`, which ncnn
computes as a copy). Bilinear sampling only: the discrete sampling gathers with `GatherElements`, so `--ncnn`
without `--sampling bilinear` is refused (the discrete rows above say "not applicable"). The backend runs FP32
(ncnn's FP16/BF16 paths off) with ncnn's default thread count, batch 1.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny", help="comma-separated: tiny, r18 (default: tiny)")
    parser.add_argument(
        "--r18-reference",
        type=Path,
        default=None,
        metavar="DIR",
        help="trained R18 reference: DIR/bilinear/best.pth and DIR/discrete/best.pth (default: random weights)",
    )
    parser.add_argument(
        "--targets",
        default="mnn,litert,rknn,ncnn",
        help="comma-separated: mnn, litert, rknn, ncnn (default: all four)",
    )
    parser.add_argument("--samplings", default="discrete,bilinear")
    parser.add_argument("--onnx2tf-python", type=Path, default=None, help="interpreter with onnx2tf (LiteRT)")
    parser.add_argument("--rknn-python", type=Path, default=None, help="interpreter with rknn-toolkit2 (RKNN)")
    parser.add_argument("--ncnn-python", type=Path, default=None, help="interpreter with pnnx (ncnn)")
    parser.add_argument("--runs", type=int, default=20, help="timed inferences per engine (default: 20)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "targets.json")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "targets.md")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite --doc from the JSON at --out, measure nothing"
    )
    return parser


def _p50_ms(infer: Any, feed: dict[str, np.ndarray], runs: int) -> float:
    for _ in range(3):
        infer(feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        infer(feed)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def _ap_of_outputs(outputs: dict[str, np.ndarray], data: Any, metadata: Any) -> float:
    """COCO AP of raw deploy outputs on ``data``'s images (boxes already in original pixels)."""
    results = []
    for record, labels, boxes, scores in zip(data.coco.images, *(outputs[n] for n in OUTPUTS), strict=True):
        for label, (x1, y1, x2, y2), score in zip(labels, boxes, scores, strict=True):
            bbox = [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]
            category = metadata.category_ids[int(label)]
            results.append({"image_id": record.id, "category_id": category, "bbox": bbox, "score": float(score)})
    return float(coco_box_metrics(data.coco.coco, results)[0]["AP"])


def _val_inputs(data: Any, metadata: Any) -> tuple[np.ndarray, np.ndarray]:
    images = [read_image(record.path)[0] for record in data.coco.images]
    return preprocess(images, input_size=metadata.input_size, preprocessing=metadata.preprocessing)


def _weights(model: str, sampling: str, folder: Path, r18_reference: Path | None) -> tuple[Path, bool]:
    """The checkpoint of ``model`` for ``sampling`` and whether it is trained (on the synthetic data)."""
    if model == "tiny":
        return TINY[sampling], True
    if r18_reference is not None:
        return r18_reference / sampling / "best.pth", True
    from rtdetr_deploy.models import build_model, get_preset, save_model

    return save_model(build_model(get_preset("r18vd")), folder / "r18vd_random.pth"), False


def _export(weights: Path, sampling: str, folder: Path) -> Path:
    """The verified ONNX of ``weights``."""
    config = ExportConfig(weights=weights, out_dir=folder, sampling=sampling)
    return export(config, verbose=False).onnx


def _row(target: str, engine: Path, deploy: Path, ctx: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"target": target, "converts": False, "runs": False}
    if target.startswith("rknn") and ctx["config"].rknn is None:
        row["error"] = "not measured: no --rknn-python"
        return row
    if target == "ncnn" and ctx["sampling"] != "bilinear":
        row["error"] = "not applicable: ncnn has no GatherElements layer (--ncnn needs --sampling bilinear)"
        return row
    if target == "ncnn" and not ctx["config"].ncnn:
        row["error"] = "not measured: no --ncnn-python"
        return row
    inputs, count = ctx["inputs"], len(ctx["inputs"][0])
    config = ctx["config"]
    if target == "rknn" and ctx["data"] is not None:  # one simulator run: verification images, then the val split
        run_on = tuple(np.concatenate([a, b]) for a, b in zip(inputs, ctx["val_inputs"], strict=True))
    else:
        run_on = inputs
    try:
        start = time.perf_counter()
        model = _bilinear_model(ctx) if target == "ncnn" else None
        outputs, record, precision = convert_target(target, config, deploy, engine, run_on, model=model)
        row.update(converts=True, runs=True, precision=precision, conversion=record)
        row["convert_s"] = round(time.perf_counter() - start, 1)
    except Exception as exc:  # each converter's failure is a result of the matrix
        row["error"] = " ".join(str(exc).split())[:300] or type(exc).__name__
        return row
    agreement = compare_detections(ctx["torch"], {n: outputs[n][:count] for n in OUTPUTS}, topn=20, margin=1e-3)
    row.update(
        decided=agreement["compared"],
        matched=agreement["matched"],
        max_score_delta=agreement["max_score_delta"],
        max_box_delta_px=agreement["max_box_delta_px"],
    )
    if ctx["data"] is not None:
        if target == "rknn":
            row["AP"] = _ap_of_outputs({n: outputs[n][count:] for n in OUTPUTS}, ctx["data"], ctx["metadata"])
        else:
            row["AP"] = evaluate_model(engine, ctx["data"], progress=False).metrics["AP"]
        row["dAP"] = row["AP"] - ctx["ort_ap"]
    if target != "rknn":
        with open_backend(engine) as backend:
            feed = {"images": inputs[0][:1], "orig_target_sizes": inputs[1][:1]}
            row["p50_ms"] = _p50_ms(backend.infer, feed, ctx["runs"])
    return row


def _bilinear_model(ctx: dict[str, Any]) -> Any:
    """The case's checkpoint as the exporter loads it for ``--ncnn`` (bilinear sampling, the export's input size)."""
    from rtdetr_deploy.models.checkpoint import load_model

    return load_model(ctx["weights_path"], sampling="bilinear").set_eval_size(ctx["metadata"].input_size)


def _pytorch(weights: Path, sampling: str, metadata: Any, inputs: tuple[np.ndarray, np.ndarray]) -> dict:
    """The checkpoint in PyTorch with the export's sampling and post-processing: ``labels``/``boxes``/``scores``."""
    import torch

    from rtdetr_deploy.models.checkpoint import load_model
    from rtdetr_deploy.models.postprocess import DeployModel, PostProcessor

    model = load_model(weights, sampling=sampling)
    model.set_eval_size(metadata.input_size)
    deploy = DeployModel(model.deploy(), PostProcessor(topk=metadata.topk)).eval()
    with torch.no_grad():
        outputs = deploy(torch.from_numpy(inputs[0]), torch.from_numpy(inputs[1]))
    return {name: value.numpy() for name, value in zip(OUTPUTS, outputs, strict=True)}


def _reference(model: str, sampling: str, folder: Path, args: argparse.Namespace, data: Any) -> tuple[Path, dict]:
    """Export, then the PyTorch and ONNX Runtime reference rows and the context every target row uses."""
    weights, trained = _weights(model, sampling, folder, args.r18_reference)
    deploy = _export(weights, sampling, folder)
    metadata = read_onnx_metadata(deploy)
    inputs = preprocess(verification_images(None), input_size=metadata.input_size, preprocessing=metadata.preprocessing)
    torch_outputs = _pytorch(weights, sampling, metadata, inputs)
    ort_outputs = run_graph(deploy, *inputs, batch=metadata.batch)
    agreement = compare_detections(torch_outputs, ort_outputs, topn=20, margin=1e-3)
    ort_row: dict[str, Any] = {"target": "onnxruntime", "converts": True, "runs": True, "precision": "fp32"}
    ort_row.update(decided=agreement["compared"], matched=agreement["matched"])
    ort_row["max_score_delta"] = agreement["max_score_delta"]
    ort_row["max_box_delta_px"] = agreement["max_box_delta_px"]
    ctx: dict[str, Any] = {"inputs": inputs, "torch": torch_outputs, "metadata": metadata, "runs": args.runs}
    ctx["data"] = data if trained else None
    ctx["weights"] = weights.name if model == "tiny" else ("trained" if trained else "random")
    ctx["sampling"], ctx["weights_path"] = sampling, weights
    rknn = "rk3588" if args.rknn_python is not None else None
    ncnn = {"ncnn": True, "ncnn_python": args.ncnn_python} if args.ncnn_python is not None else {}
    ctx["config"] = TargetsConfig(tflite_python=args.onnx2tf_python, rknn=rknn, rknn_python=args.rknn_python, **ncnn)
    if ctx["data"] is not None:
        ort_row["AP"] = ctx["ort_ap"] = evaluate_model(deploy, data, progress=False).metrics["AP"]
        ort_row["dAP"] = 0.0
        ctx["val_inputs"] = _val_inputs(data, metadata)
    with open_backend(deploy) as backend:
        feed = {"images": inputs[0][:1], "orig_target_sizes": inputs[1][:1]}
        ort_row["p50_ms"] = _p50_ms(backend.infer, feed, args.runs)
    ctx["rows"] = [ort_row]
    return deploy, ctx


def _cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    if key in ("AP", "dAP"):
        return f"{value:+.4f}" if key == "dAP" else f"{value:.4f}"
    if key == "matched":
        return f"{value:.0%}"
    if key in ("max_score_delta", "max_box_delta_px") and not row.get("matched", 1):
        return "-"  # nothing was found again: there is no difference to report
    if key == "max_score_delta":
        return f"{value:.1e}"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _markdown(report: dict[str, Any]) -> str:
    header = [
        "model",
        "sampling",
        "target",
        "precision",
        "converts",
        "runs",
        "decided top-20",
        "found again",
        "max score diff",
        "max box diff px",
        "AP",
        "dAP vs ORT",
        "p50 ms",
        "note",
    ]
    rows = []
    for case in report["cases"]:
        for row in case["rows"]:
            note = row.get("error", "")
            if row["target"].startswith("rknn") and row.get("runs"):
                note = "run in rknn-toolkit2's x86 simulator (no latency)"
            weights = case.get("weights")
            cells = [
                f"{case['model']} ({weights})" if weights else case["model"],
                case["sampling"],
                row["target"],
                row.get("precision", "-"),
                "yes" if row["converts"] else "no",
                "yes" if row["runs"] else "no",
            ]
            cells += [
                _cell(row, k)
                for k in ("decided", "matched", "max_score_delta", "max_box_delta_px", "AP", "dAP", "p50_ms")
            ]
            rows.append([*cells, note])
    lines = [
        "# Target engines: the measured compatibility matrix",
        "",
        "Generated by `python benchmarks/targets.py` (do not edit by hand); raw figures in "
        "`benchmarks/results/targets.json`.",
        "",
        f"Machine: {device_line(report['device'])}. Command: `{report['command']}`. Took {report['seconds']:.0f} s.",
        "",
        "Differences are against PyTorch (the checkpoint with the same sampling and post-processing) on the "
        "export's 4 generated verification scenes, over the top-20 detections that are decided at a 1e-3 score margin. "
        "AP is COCO AP on "
        "the synthetic validation split (trained weights only), dAP against ONNX Runtime FP32. p50 is "
        "`Backend.infer` on one preprocessed image, batch 1.",
        "",
        *markdown_table(header, rows),
        USAGE,
        NCNN,
    ]
    return "\n".join(lines)


def _write_doc(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(_markdown(report))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.render_only:
        _write_doc(args.doc, json.loads(args.out.read_text()))
        return 0
    started = time.perf_counter()
    data = load_eval_data("synthetic", split="val")
    cases = []
    for model in args.models.split(","):
        for sampling in args.samplings.split(","):
            with tempfile.TemporaryDirectory(prefix="rtdetr-targets-") as tmp:
                deploy, ctx = _reference(model, sampling, Path(tmp), args, data)
                for target in args.targets.split(","):
                    row = _row(target, Path(tmp) / TARGET_FILES[target], deploy, ctx)
                    print(model, sampling, json.dumps(row, default=str)[:400], flush=True)
                    ctx["rows"].append(row)
            case = {"model": model, "weights": ctx["weights"], "sampling": sampling, "rows": ctx["rows"]}
            cases.append(case)
    report = {
        "command": "python benchmarks/targets.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": describe_device("cpu"),
        "seconds": time.perf_counter() - started,
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=str))
    _write_doc(args.doc, report)
    print(f"wrote {args.out} and {args.doc}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        traceback.print_exc()
        sys.exit(130)
