"""Load on ``rtdetr-serve`` over loopback: p50/p99 latency and throughput by replicas, batching and concurrency.

Exports the model once (the demo's shipped tiny checkpoint by default, or RT-DETRv2-R18 with random weights:
speed does not depend on them) with a dynamic batch ``1,4,8``, starts Ray Serve on 127.0.0.1 once and deploys it
in each setting in turn (1 and 2 replicas, each with and without dynamic batching). In each setting, bounded
clients send ``--requests`` requests (the four shared photographs in turn, as image bodies) at each concurrency:
``C`` client threads, each sending its next request when the previous one is answered, stopping when all are
sent. A request's latency is its wall-clock time in the client (``time.perf_counter``), from sending the body to
the parsed answer; throughput is requests answered per second of the whole run. A few requests warm each setting
up untimed. Every answer must be 200 with detections (a failed request fails the run).

Clients, the HTTP proxy and the replicas share this machine's CPUs: the figures are for the whole service on one
host, clients included. Writes ``benchmarks/results/serve_load_<model>.json`` and the table into docs/serve.md.

    python benchmarks/serve_load.py                                   # tiny model, 300 requests per cell
    python benchmarks/serve_load.py --model r18 --requests 48 --concurrency 1,16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from rtdetr_deploy.atomic import atomic_path
from rtdetr_deploy.bench.device import describe_device
from rtdetr_deploy.bench.report import device_line
from rtdetr_deploy.bench.stats import summarize
from rtdetr_deploy.tables import markdown_table

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT.parent / "shared" / "testdata" / "images"
DOCS = ROOT / "docs" / "serve.md"
BATCH = (1, 4, 8)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("tiny", "r18"), default="tiny", help="tiny (the demo's) or r18 (random)")
    parser.add_argument("--requests", type=int, default=300, help="requests per cell (default: 300)")
    parser.add_argument("--concurrency", default="1,4,16", help="client counts (default: 1,4,16)")
    parser.add_argument("--replicas", default="1,2", help="replica counts (default: 1,2)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="batch wait (default: 5)")
    parser.add_argument("--warmup", type=int, default=8, help="untimed requests per setting (default: 8)")
    parser.add_argument("--images", type=Path, default=IMAGES, help="photographs to send (default: shared set)")
    parser.add_argument("--port", type=int, default=8765, help="loopback port (default: 8765)")
    parser.add_argument("--no-docs", action="store_true", help="do not write the table into docs/serve.md")
    return parser


def _export(model: str, work: Path) -> Path:
    from rtdetr_deploy.data.pretrained import PRETRAINED_TINY
    from rtdetr_deploy.export.config import ExportConfig
    from rtdetr_deploy.export.pipeline import export

    weights = PRETRAINED_TINY
    if model == "r18":
        from rtdetr_deploy.models import build_model, get_preset, save_model

        weights = save_model(build_model(get_preset("r18vd"), num_classes=80), work / "r18vd.pth")
    return export(ExportConfig(weights=weights, out_dir=work, batch=BATCH), verbose=False).onnx


def _post(url: str, body: bytes) -> float:
    start = time.perf_counter()
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "image/jpeg"})
    with urllib.request.urlopen(request, timeout=300) as response:
        answer = json.loads(response.read())
    if response.status != 200 or "detections" not in answer:
        raise RuntimeError(f"bad answer {response.status}: {str(answer)[:200]}")
    return time.perf_counter() - start


def _load(url: str, bodies: list[bytes], *, requests: int, concurrency: int) -> dict[str, Any]:
    """``requests`` requests from ``concurrency`` closed-loop clients; latencies and throughput."""
    order = [bodies[i % len(bodies)] for i in range(requests)]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        latencies = list(pool.map(lambda body: _post(url, body), order))
    wall = time.perf_counter() - start
    stats = summarize(latencies)
    return {
        "concurrency": concurrency,
        "requests": requests,
        "p50_ms": stats.p50_ms,
        "p99_ms": stats.p99_ms,
        "mean_ms": stats.mean_ms,
        "throughput_rps": requests / wall,
        "wall_s": wall,
    }


def _deploy(config: Any) -> None:
    from ray import serve

    from rtdetr_deploy.serve.app import build_app
    from rtdetr_deploy.serve.service import APP_NAME

    serve.run(build_app(config), name=APP_NAME, route_prefix="/", blocking=False)


def _run(args: argparse.Namespace, model: Path, bodies: list[bytes]) -> list[dict[str, Any]]:
    from rtdetr_deploy.serve.config import ServeConfig
    from rtdetr_deploy.serve.service import start_service, stop_service

    base = ServeConfig(model=model.resolve(), port=args.port, threads=1, max_wait_ms=args.max_wait_ms)
    url = start_service(replace(base, dynamic_batching=False)) + "/detect"
    rows = []
    try:
        for replicas in [int(r) for r in args.replicas.split(",")]:
            for batching in (False, True):
                config = replace(base, replicas=replicas, dynamic_batching=batching)
                _deploy(config)
                for _ in range(args.warmup):
                    _post(url, bodies[0])
                for concurrency in [int(c) for c in args.concurrency.split(",")]:
                    load = os.getloadavg()[0]
                    cell = _load(url, bodies, requests=args.requests, concurrency=concurrency)
                    cell.update(replicas=replicas, dynamic_batching=batching, load_average_before=load)
                    rows.append(cell)
                    print(
                        f"replicas {replicas} batching {'on ' if batching else 'off'} C={concurrency:>2}: "
                        f"p50 {cell['p50_ms']:.1f} ms, p99 {cell['p99_ms']:.1f} ms, "
                        f"{cell['throughput_rps']:.1f} req/s",
                        flush=True,
                    )
    finally:
        stop_service()
    return rows


def _table(rows: list[dict[str, Any]]) -> list[str]:
    header = ["replicas", "dynamic batching", "clients", "p50 ms", "p99 ms", "requests/s"]
    body = [
        [
            str(r["replicas"]),
            f"on (max {BATCH[2]})" if r["dynamic_batching"] else "off",
            str(r["concurrency"]),
            f"{r['p50_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            f"{r['throughput_rps']:.1f}",
        ]
        for r in rows
    ]
    return markdown_table(header, body)


def _write_docs(report: dict[str, Any], table: list[str]) -> None:
    """Replace this model's table in docs/serve.md (between its ``serve-load:<model>`` markers)."""
    model = report["model"]
    start, end = f"<!-- serve-load:{model['name']}:start -->", f"<!-- serve-load:{model['name']}:end -->"
    text = DOCS.read_text(encoding="utf-8")
    if start not in text or end not in text:
        raise SystemExit(f"{DOCS} lacks the markers {start} / {end}")
    lines = [
        start,
        f"{model['name']} ({model['input_size'][0]}x{model['input_size'][1]}, ONNX Runtime on the CPU, 1 thread per "
        f"replica, model batch {model['batch'][0]}..{model['batch'][2]}, max wait {report['max_wait_ms']} ms), "
        f"{report['requests']} requests per row; {report['machine']}.",
        "",
        *table,
        end,
    ]
    head, rest = text.split(start, 1)
    with atomic_path(DOCS) as tmp:
        tmp.write_text(head + "\n".join(lines) + rest.split(end, 1)[1], encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise SystemExit(f"no photographs in {args.images}")
    bodies = [p.read_bytes() for p in files]
    device = describe_device("cpu")
    with tempfile.TemporaryDirectory(prefix="serve_load_") as work:
        model = _export(args.model, Path(work))
        from rtdetr_deploy.runtime.onnxruntime_backend import read_onnx_metadata

        metadata = read_onnx_metadata(model)
        rows = _run(args, model, bodies)
    import ray

    report = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "model": {"name": args.model, "input_size": list(metadata.input_size), "batch": list(BATCH)},
        "requests": args.requests,
        "max_wait_ms": args.max_wait_ms,
        "images": [p.name for p in files],
        "machine": device_line(device),
        "device": device,
        "ray": ray.__version__,
        "rows": rows,
        "throughput_gain_at_max_clients": _gain(rows),
    }
    out = ROOT / "benchmarks" / "results" / f"serve_load_{args.model}.json"
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = _table(rows)
    print("\n".join(table))
    if not args.no_docs:
        _write_docs(report, table)
    return 0


def _gain(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Throughput with batching over without, per replica count, at the highest concurrency."""
    top = max(r["concurrency"] for r in rows)
    gains = {}
    for replicas in sorted({r["replicas"] for r in rows}):
        cell = {
            r["dynamic_batching"]: r["throughput_rps"]
            for r in rows
            if r["replicas"] == replicas and r["concurrency"] == top
        }
        if False in cell and True in cell:
            gains[str(replicas)] = round(cell[True] / cell[False], 3)
    return gains


if __name__ == "__main__":
    sys.exit(main())
