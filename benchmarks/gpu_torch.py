"""How fast the PyTorch model itself runs on a GPU: eager FP32, eager FP16, and FP16 replayed as a CUDA graph.

The goal is to know what the torch backend can reach before any pre- or post-processing: each preset x batch x
sampling runs on random input (speed does not depend on the values), timed by the package's bench API
(``rtdetr_deploy.bench.timing.time_calls`` with ``torch.cuda.synchronize`` around every call, after warm-up;
``stats.summarize`` for the percentiles) and written with ``bench.device.describe_device``.

    python -m benchmarks.gpu_torch --presets r18vd --batch 1,8 --iters 200 --json benchmarks/results/gpu_torch.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from rtdetr_deploy.bench.device import describe_device
from rtdetr_deploy.bench.report import device_line
from rtdetr_deploy.bench.stats import summarize
from rtdetr_deploy.bench.timing import time_calls
from rtdetr_deploy.models import build_model, get_preset


def _latencies(fn: Callable[[], object], *, warmup: int, iters: int) -> list[float]:
    """Seconds per call of ``fn``, the GPU synchronised before and after each."""
    return time_calls(fn, warmup=warmup, iters=iters, synchronize=torch.cuda.synchronize)


def _graphed(model: torch.nn.Module, static_input: torch.Tensor):  # noqa: ANN202
    """Capture one forward into a CUDA graph; returns a replay function writing to static outputs."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.no_grad():
        for _ in range(3):
            model(static_input)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        static_out = model(static_input)
    return graph.replay, static_out


def bench_case(preset: str, batch: int, sampling: str, *, warmup: int, iters: int) -> list[dict[str, object]]:
    config = get_preset(preset)
    torch.manual_seed(0)
    model = build_model(config, sampling=sampling).deploy().cuda()
    images = torch.rand(batch, 3, *config.eval_size, device="cuda")
    rows = []

    def record(mode: str, latencies: list[float]) -> None:
        stats = summarize(latencies, batch=batch).as_dict()
        rows.append({"preset": preset, "batch": batch, "sampling": sampling, "mode": mode, "warmup": warmup, **stats})

    with torch.no_grad():
        record("eager fp32", _latencies(lambda: model(images), warmup=warmup, iters=iters))
        half, half_images = model.half(), images.half()
        record("eager fp16", _latencies(lambda: half(half_images), warmup=warmup, iters=iters))
    replay, _ = _graphed(half, half_images)
    record("fp16 + CUDA graph", _latencies(replay, warmup=warmup, iters=iters))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="r18vd", help="comma-separated presets (default: r18vd)")
    parser.add_argument("--batch", default="1,8", help="comma-separated batch sizes (default: 1,8)")
    parser.add_argument("--sampling", default="bilinear,discrete", help="comma-separated sampling methods")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks.gpu_torch: no CUDA device", file=sys.stderr)
        return 1
    rows = []
    for preset in args.presets.split(","):
        for batch in (int(b) for b in args.batch.split(",")):
            for sampling in args.sampling.split(","):
                rows += bench_case(preset, batch, sampling, warmup=args.warmup, iters=args.iters)
    device = describe_device("cuda:0")
    print(f"{device_line(device)}; model only, random input\n")
    print("| preset | batch | sampling | mode | p50 ms | p99 ms | images/s | vs eager fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        same_case = ("preset", "batch", "sampling")
        base = next(r for r in rows if r["mode"] == "eager fp32" and all(r[k] == row[k] for k in same_case))
        speedup = base["mean_ms"] / row["mean_ms"]
        print(
            f"| {row['preset']} | {row['batch']} | {row['sampling']} | {row['mode']} | {row['p50_ms']:.2f} | "
            f"{row['p99_ms']:.2f} | {row['images_per_s']:.0f} | {speedup:.2f}x |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"device": device, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
