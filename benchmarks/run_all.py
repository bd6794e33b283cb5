"""Regenerate the performance table of benchmarks/README.md: every figure in it comes from this script.

    python -m benchmarks.run_all               # CPU rows, on this machine (about 6-8 minutes on 2 cores)
    python -m benchmarks.run_all --gpu         # GPU rows, on a CUDA machine (the torch backend; a few minutes)
    python -m benchmarks.run_all --table-only  # rebuild the table from benchmarks/results/*.json

The CPU run builds RT-DETRv2-R18 (r18vd, 640x640) with random but non-trivial weights (no download: speed does
not depend on the weight values, agreement figures do, see the notes), writes a 1280x720 test video, measures
ONNX Runtime FP32 and INT8 in both sampling modes at batch 1 and 4 with the per-stage split and the video
pipeline, PyTorch eager, and the CPU tuning choices (ONNX Runtime session options, preprocessing before/after,
torch's thread count), then writes ``benchmarks/results/*.json|png|md`` and the table
(``benchmarks/results/README_table.md``, also spliced into benchmarks/README.md between its markers). GPU rows
come from ``--gpu`` and from ``benchmarks/gpu_torch.py`` (model only), each recorded with its device description.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.goals import evaluate_goals
from rtdetr_deploy.bench.benchmark import run_benchmark
from rtdetr_deploy.bench.compare import compare_results, overhead_rows
from rtdetr_deploy.bench.config import BenchConfig
from rtdetr_deploy.bench.device import describe_device, precision_isa
from rtdetr_deploy.bench.report import device_line, other_cpu, write_json, write_markdown, write_plot
from rtdetr_deploy.bench.timing import CpuContention
from rtdetr_deploy.runtime.sinks import VideoWriter
from rtdetr_deploy.tables import markdown_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "benchmarks" / "README.md"
TABLE_START, TABLE_END = "<!-- performance-table:start -->", "<!-- performance-table:end -->"
PRESET, IMGSZ = "r18vd", (640, 640)


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- inputs


def make_weights(path: Path, *, preset: str = PRESET, seed: int = 0) -> Path:
    """A checkpoint of ``preset`` with random but non-trivial weights.

    Heads and sampling offsets get random weights (fresh ones are zero: every query would sit on its anchor), and
    every parameter gets 2% noise: freshly built decoder layers are identical copies, and graph optimisers merge
    identical MatMuls (ONNX Runtime did: 58.3 instead of 60.5 GFLOPs), which would flatter the timings.
    """
    import torch

    from rtdetr_deploy.models import build_model, get_preset, save_model

    torch.manual_seed(seed)
    model = build_model(get_preset(preset), num_classes=80)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "bbox_head" in name or "score_head" in name or "sampling_offsets.weight" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
            if param.numel() > 1:
                param.add_(torch.randn(param.shape, generator=generator) * 0.02 * param.std())
    return save_model(model, path)


def write_video(path: Path, *, frames: int, size: tuple[int, int] = (1280, 720), fps: float = 30.0) -> Path:
    """A street-like test clip: textured background, a dozen shapes moving at different speeds (mp4v)."""
    width, height = size
    rng = np.random.default_rng(0)
    background = cv2.resize(rng.integers(0, 256, (18, 32, 3), dtype=np.uint8), size)
    background = cv2.add(background, rng.integers(0, 24, (height, width, 3), dtype=np.uint8))
    movers = [
        (rng.uniform(0, width), rng.uniform(0, height), rng.uniform(-12, 12), rng.uniform(-4, 4), rng.integers(30, 160))
        for _ in range(12)
    ]
    colors = [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in movers]
    with VideoWriter(path, fps=fps, size_wh=size) as writer:
        for index in range(frames):
            frame = background.copy()
            for (x, y, dx, dy, side), color in zip(movers, colors, strict=True):
                cx, cy = int((x + dx * index) % width), int((y + dy * index) % height)
                cv2.rectangle(frame, (cx, cy), (cx + int(side), cy + int(side) // 2), color, -1)
            writer.write(frame)
    return path


# ---------------------------------------------------------------------------------------------- CPU tuning


def _alternating_blocks(functions: dict[str, Any], *, passes: int, block: int) -> dict[str, dict[str, float]]:
    """p50/min ms of each function, timed in blocks that alternate between the functions.

    Each block starts with one untimed call: thread pools of the previous setting (ONNX Runtime's and OpenMP's
    spin for a while after their work) would otherwise slow its first call. Alternating the blocks over
    ``passes`` spreads slow drifts of the machine over all settings alike.
    """
    times: dict[str, list[float]] = {name: [] for name in functions}
    with CpuContention() as contention:
        for _ in range(passes):
            for name, fn in functions.items():
                fn()
                for _ in range(block):
                    start = time.perf_counter()
                    fn()
                    times[name].append((time.perf_counter() - start) * 1e3)
    share = contention.other_share
    return {
        name: {"p50_ms": statistics.median(v), "min_ms": min(v), "runs": len(v), "other_cpu_share": share}
        for name, v in times.items()
    }


def ort_session_tuning(onnx_path: Path, *, rounds: int) -> dict[str, Any]:
    """ONNX Runtime session options on the FP32 model at batch 1: the runtime's defaults against alternatives."""
    import onnxruntime as ort

    from rtdetr_deploy.bench.device import physical_cores

    feed = {
        "images": np.random.default_rng(0).random((1, 3, *IMGSZ), dtype=np.float32),
        "orig_target_sizes": np.array([[1280, 720]], np.int64),
    }
    settings = {
        "runtime default: ORT_ENABLE_ALL, intra-op threads = physical cores, spinning": {},
        f"intra-op threads = {physical_cores()} (explicit)": {"threads": physical_cores()},
        "intra-op threads = 1": {"threads": 1},
        "spinning off": {"spin": "0"},
        "graph optimisation ORT_ENABLE_EXTENDED (no layout transforms)": {"level": "extended"},
    }
    functions = {}
    for name, option in settings.items():
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if "threads" in option:
            options.intra_op_num_threads = option["threads"]
        if "spin" in option:
            options.add_session_config_entry("session.intra_op.allow_spinning", option["spin"])
        if option.get("level") == "extended":
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        functions[name] = lambda s=session: s.run(None, feed)
    return _alternating_blocks(functions, passes=2, block=rounds)


def _preprocess_before(images: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """The runtime's preprocessing as it was before this work: NHWC batch, then one strided NCHW conversion."""
    height, width = size
    batch = np.empty((len(images), height, width, 3), np.uint8)
    for i, image in enumerate(images):
        batch[i] = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    tensor = batch[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32)
    tensor *= np.float32(1 / 255)
    return np.ascontiguousarray(tensor)


def preprocess_tuning(*, rounds: int) -> dict[str, Any]:
    """Preprocessing of one 1280x720 frame to 640x640, before and after the single-pass rewrite (same output)."""
    from rtdetr_deploy.metadata import Preprocessing
    from rtdetr_deploy.runtime.preprocess import preprocess

    frame = cv2.resize(np.random.default_rng(0).integers(0, 256, (72, 128, 3), dtype=np.uint8), (1280, 720))
    after, _ = preprocess([frame], input_size=IMGSZ, preprocessing=Preprocessing())
    if not np.array_equal(after, _preprocess_before([frame], IMGSZ)):
        raise AssertionError("the rewritten preprocessing no longer matches the previous one")
    functions = {
        "before: NHWC batch, strided astype, contiguous copy": lambda: _preprocess_before([frame], IMGSZ),
        "after: per image cvtColor + one scaled CHW write (runtime)": lambda: preprocess(
            [frame], input_size=IMGSZ, preprocessing=Preprocessing()
        ),
    }
    return _alternating_blocks(functions, passes=2, block=rounds)


def torch_thread_tuning(weights: Path, *, rounds: int) -> dict[str, Any]:
    """PyTorch eager at batch 1 with its default thread count and with one thread."""
    import torch

    from rtdetr_deploy import load_model

    model = load_model(weights, sampling="discrete").deploy().eval()
    images = torch.rand(1, 3, *IMGSZ)
    default = torch.get_num_threads()

    def run(threads: int) -> None:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            model(images)

    try:
        return _alternating_blocks(
            {f"torch default ({default} threads)": lambda: run(default), "torch 1 thread": lambda: run(1)},
            passes=2,
            block=rounds,
        )
    finally:
        torch.set_num_threads(default)


# ---------------------------------------------------------------------------------------------- runs


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _write_report(report: dict[str, Any], stem: str) -> None:
    write_json(report, RESULTS / f"{stem}.json")
    write_markdown(report, RESULTS / f"{stem}.md")
    write_plot(report, RESULTS / f"{stem}.png")
    log(f"wrote {RESULTS / stem}.json|md|png")


def run_cpu(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rtdetr-run-all-") as tmp:
        work = Path(tmp)
        weights = Path(args.weights) if args.weights else make_weights(work / f"{PRESET}.pth")
        video = write_video(work / "street.mp4", frames=args.frames + 2 * 4 + 8)
        log(f"[1/4] tuning: exporting {weights.name} once (discrete, FP32) for the session-option sweep")
        from rtdetr_deploy.export.config import ExportConfig
        from rtdetr_deploy.export.pipeline import export

        fp32 = export(ExportConfig(weights=weights, out_dir=work / "tuning", imgsz=IMGSZ), verbose=False).onnx
        tuning = {
            "device": describe_device("cpu"),
            "onnxruntime_session_options": ort_session_tuning(fp32, rounds=args.tuning_rounds),
            "preprocess_1280x720_to_640": preprocess_tuning(rounds=25),
            "torch_threads": torch_thread_tuning(weights, rounds=2),
        }
        write_json(tuning, RESULTS / "cpu_tuning.json")
        log("[2/4] ONNX Runtime: FP32 and INT8, discrete and bilinear, batch 1 and 4, video")
        common = {"model": weights, "imgsz": IMGSZ, "warmup": 2, "matmul_peak": True}
        onnxruntime = run_benchmark(
            BenchConfig(
                **common,
                backends=("onnxruntime",),
                precisions=("fp32", "int8"),
                samplings=("discrete", "bilinear"),
                batches=(1, 4),
                iters=args.iters,
                video=video,
                frames=args.frames,
            ),
            log=log,
            command=f"rtdetr-bench {PRESET}.pth --backend onnxruntime --precision fp32,int8 --sampling "
            f"discrete,bilinear --imgsz 640 --batch 1,4 --warmup 2 --iters {args.iters} --video street.mp4 "
            f"--frames {args.frames}",
        )
        _write_report(onnxruntime, "cpu_onnxruntime")
        log("[3/4] PyTorch eager: FP32, discrete and bilinear, batch 1")
        torch_report = run_benchmark(
            BenchConfig(
                **common, backends=("torch",), samplings=("discrete", "bilinear"), batches=(1,), iters=args.torch_iters
            ),
            log=log,
            command=f"rtdetr-bench {PRESET}.pth --backend torch --sampling discrete,bilinear --imgsz 640 "
            f"--batch 1 --warmup 2 --iters {args.torch_iters}",
        )
        _write_report(torch_report, "cpu_torch")
    log(f"[4/4] table (CPU part took {time.perf_counter() - started:.0f} s)")


def run_gpu(args: argparse.Namespace) -> None:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("run_all.py --gpu: no CUDA device")
    name = torch.cuda.get_device_name(0)
    with tempfile.TemporaryDirectory(prefix="rtdetr-run-all-") as tmp:
        work = Path(tmp)
        weights = Path(args.weights) if args.weights else make_weights(work / f"{PRESET}.pth")
        video = write_video(work / "street.mp4", frames=args.gpu_frames + 2 * 8 + 8)

        def measure(cuda_graph: str) -> dict[str, Any]:
            return run_benchmark(
                BenchConfig(
                    model=weights,
                    backends=("torch",),
                    precisions=("fp32", "fp16"),
                    device="cuda:0",
                    batches=(1, 8),
                    imgsz=IMGSZ,
                    warmup=20,
                    iters=args.gpu_iters,
                    video=video,
                    frames=args.gpu_frames,
                    cuda_graph=cuda_graph,
                ),
                log=log,
                command=f"rtdetr-bench {PRESET}.pth --backend torch --device cuda:0 --precision fp32,fp16 "
                f"--cuda-graph {cuda_graph} --imgsz 640 --batch 1,8 --warmup 20 --iters {args.gpu_iters} "
                f"--video street.mp4 --frames {args.gpu_frames}",
            )

        try:
            report = measure("both")
        except Exception as exc:  # record the eager figures even if graph capture fails on this machine
            log(f"CUDA graph run failed ({type(exc).__name__}: {exc}); measuring eager only")
            report = measure("off")
            report["notes"].append(f"CUDA graph capture failed here: {type(exc).__name__}: {exc}")
    _write_report(report, f"gpu_runtime_{_slug(name.replace('NVIDIA', ''))}")


# ---------------------------------------------------------------------------------------------- table


def _machine(device: dict[str, Any]) -> str:
    gpu = device.get("gpu")
    if gpu:
        return gpu.get("name", "GPU")
    cpu = device["cpu"]
    vm = ", VM" if cpu.get("virtual_machine") else ""
    return f"{cpu['model']}, {cpu['physical_cores']} cores{vm}, {precision_isa(cpu.get('simd', []))}"


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


RUNTIME_NAMES = {"onnxruntime": "ONNX Runtime", "torch": "PyTorch eager", "tensorrt": "TensorRT"}


def _runtime_rows(report: dict[str, Any]) -> list[list[str]]:
    machine = _machine(report["device"])
    versions = report["device"]["versions"]
    rows = []
    for r in report["results"]:
        runtime = RUNTIME_NAMES[r["backend"]] + (" + CUDA graph" if r["cuda_graph"] else "")
        version = versions.get(r["backend"]) or ""
        precision = r["precision"].upper() + (
            " autocast" if r["backend"] == "torch" and r["precision"] == "fp16" else ""
        )
        pipeline = f"{r['pipeline']['fps']:.1f}" if r.get("pipeline") else "-"
        lat = r["latency"]
        rows.append(
            [
                machine,
                f"{runtime} {version}".strip(),
                precision,
                r["sampling"],
                str(r["batch"]),
                f"{lat['p50_ms']:.1f}",
                f"{lat['p99_ms']:.1f}",
                f"{lat['images_per_s']:.1f}",
                pipeline,
                str(lat["runs"]),
                other_cpu(r.get("other_cpu_share")),
            ]
        )
    return rows


def _model_only_rows(report: dict[str, Any]) -> list[list[str]]:
    device = report["device"]
    rows = []
    for r in report["results"]:
        if r["preset"] != PRESET:
            continue
        rows.append(
            [
                device["gpu"],
                f"PyTorch {device['torch']} model only ({r['mode']})",
                "FP16" if "fp16" in r["mode"] else "FP32",
                r["sampling"],
                str(r["batch"]),
                f"{r['p50_ms']:.1f}",
                f"{r['p99_ms']:.1f}",
                f"{r['images_per_s']:.0f}",
                "-",
                str(r["iters"]),
                "-",
            ]
        )
    return rows


def build_table() -> str:
    cpu_ort = _load(RESULTS / "cpu_onnxruntime.json")
    cpu_torch = _load(RESULTS / "cpu_torch.json")
    gpu_runtime = [_load(p) for p in sorted(RESULTS.glob("gpu_runtime_*.json"))]
    gpu_model_only = [_load(p) for p in sorted(RESULTS.glob("gpu_torch_*.json"))]
    header = ["machine", "runtime", "precision", "sampling", "batch", "p50 ms", "p99 ms", "images/s"]
    header += ["video FPS", "runs", "other CPU"]
    rows: list[list[str]] = []
    for report in (cpu_ort, cpu_torch, *gpu_runtime):
        if report:
            rows += _runtime_rows(report)
    for report in gpu_model_only:
        if report:
            rows += _model_only_rows(report)
    lines = [
        f"RT-DETRv2-R18 ({PRESET}) at 640x640. Latency is per batch, inference alone (`backend.infer` on a prepared "
        "batch; warm-up first, CUDA synchronised); video FPS is the threaded decode -> preprocess -> infer -> "
        "postprocess pipeline of `rtdetr-infer` on a 1280x720 clip. Regenerate with `python -m benchmarks.run_all` "
        "(CPU rows), `--gpu` on a CUDA machine (GPU runtime rows) and `python -m benchmarks.gpu_torch` (GPU "
        "model-only rows); details, per-stage splits and device descriptions are in `benchmarks/results/`. "
        "*other CPU* is the share of the machine's CPUs that other processes used while a row was measured "
        "(the 2-core machine is shared): rows measured beside other work are slower than the machine can do.",
        "",
        *markdown_table(header, rows),
    ]
    # Goals and the key ratios, from the reports merged (the ONNX Runtime vs PyTorch pair spans two CPU runs).
    merged: dict[str, Any] = {"results": [], "agreements": []}
    for report in (cpu_ort, cpu_torch, *gpu_runtime):
        if report:
            merged["results"] += report["results"]
            merged["agreements"] += report.get("agreements", [])
            merged["flops"] = merged.get("flops") or report.get("flops")
            merged["matmul_peak"] = merged.get("matmul_peak") or report.get("matmul_peak")
    merged["comparisons"] = compare_results(merged["results"])
    merged["overheads"] = overhead_rows(merged["results"])
    # The README keeps the discrete-sampling cases (what rtdetr-export ships) and, for the GPU video pipeline,
    # the fastest path; every goal row of every case is in the per-run markdown files.
    goals = [
        g
        for g in evaluate_goals(merged)
        if "bilinear" not in g["case"]
        and not (
            g["goal"] == "video_pipeline" and "cuda" in g["case"] and "fp16 discrete + CUDA graph" not in g["case"]
        )
    ]
    if goals:
        status = {True: "met", False: "**not met**", None: "reported"}
        goal_rows = [[g["target"], g["case"], g["display"], status[g["met"]]] for g in goals]
        lines += [
            "",
            "Goals (measured by the runs above):",
            "",
            *markdown_table(["goal", "case", "measured", "status"], goal_rows),
        ]
    keep = ("discrete vs bilinear sampling", "ONNX Runtime vs PyTorch eager", "INT8 vs FP32", "FP16 vs FP32")
    keep += ("CUDA graph vs eager", "batch scaling")
    ratio_rows = [
        [c["comparison"], c["fixed"], f"{c['ratio']:.2f}", c["reading"]]
        for c in merged["comparisons"]
        if c["comparison"] in keep
    ]
    if ratio_rows:
        lines += ["", "Side by side (p50; ratio > 1: the candidate is faster):", ""]
        lines += markdown_table(["comparison", "fixed", "ratio", "reading"], ratio_rows)
    tuning = _load(RESULTS / "cpu_tuning.json")
    if tuning:
        machine = _machine(tuning["device"])
        lines += ["", f"CPU tuning on {machine}: the settings of each group timed in alternating blocks, p50 ms:", ""]
        tuning_rows = [
            [group, setting, f"{values['p50_ms']:.2f}", str(values["runs"]), other_cpu(values.get("other_cpu_share"))]
            for group, key in (
                ("ONNX Runtime FP32, batch 1", "onnxruntime_session_options"),
                ("preprocess 1280x720 -> 640", "preprocess_1280x720_to_640"),
                ("PyTorch eager FP32, batch 1", "torch_threads"),
            )
            for setting, values in tuning[key].items()
        ]
        lines += markdown_table(["what", "setting", "p50 ms", "runs", "other CPU"], tuning_rows)
    machines = [r for r in (cpu_ort, cpu_torch, *gpu_runtime, *gpu_model_only) if r]
    lines += ["", "Machines:", ""]
    for report in machines:
        device = report["device"]
        line = (
            device_line(device)
            if "cpu" in device
            else f"{device['gpu']}, torch {device['torch']}, CUDA {device['cuda']}"
        )
        lines.append(f"- {line}")
    notes = sorted({note for r in (cpu_ort, cpu_torch, *gpu_runtime) if r for note in r.get("notes", [])})
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def splice_readme(table: str) -> bool:
    """Replace the text between the README's table markers; ``False`` when the markers are missing."""
    text = README.read_text()
    if TABLE_START not in text or TABLE_END not in text:
        return False
    head, rest = text.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    README.write_text(f"{head}{TABLE_START}\n{table}{TABLE_END}{tail}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--gpu", action="store_true", help="measure the GPU rows (needs CUDA)")
    mode.add_argument("--table-only", action="store_true", help="only rebuild the table from the saved results")
    parser.add_argument("--weights", default=None, help=f"a {PRESET} checkpoint to use instead of random weights")
    parser.add_argument("--iters", type=int, default=10, help="timed runs per ONNX Runtime case and batch")
    parser.add_argument("--torch-iters", type=int, default=5, help="timed runs per PyTorch eager case (CPU)")
    parser.add_argument("--frames", type=int, default=12, help="video frames per case and batch (CPU)")
    parser.add_argument("--tuning-rounds", type=int, default=4, help="timed runs per block of the ORT option sweep")
    parser.add_argument("--gpu-iters", type=int, default=200, help="timed runs per GPU case and batch")
    parser.add_argument("--gpu-frames", type=int, default=96, help="video frames per GPU case and batch")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.gpu:
        run_gpu(args)
    elif not args.table_only:
        run_cpu(args)
    table = build_table()
    (RESULTS / "README_table.md").write_text(table)
    print(table)
    log("benchmarks/README.md table updated" if splice_readme(table) else "benchmarks/README.md has no table markers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
