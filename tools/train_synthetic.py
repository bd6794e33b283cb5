"""How far ``rtdetr-train`` gets on the embedded synthetic set in a fixed time on this machine's CPU.

Phase 1 trains the ``tiny`` preset from scratch for ``--minutes`` with bilinear sampling, evaluating the EMA
weights (COCO AP/AP50 on the synthetic validation split) after every epoch, and reports the AP reached at
each ``--report`` minute (the last evaluation at or before it) with the whole curve. Phase 2 is RT-DETRv2's
discrete-sampling fine-tune (dsp recipe: ``--init`` the result, ``--sampling discrete``, sampling offsets
frozen) for ``--dsp-minutes``. After each phase the checkpoint goes through ``rtdetr-export`` (discrete
sampling, verified ONNX) and the runtime's ``Detector`` on ONNX Runtime, whose detections are scored the
same way: the AP as deployed.

    python tools/train_synthetic.py --minutes 30 --report 10 30 --dsp-minutes 3

Writes ``benchmarks/results/train_synthetic_<tag>.json`` and ``.png``; the JSON records the machine (CPU
model, cores, load average before and after: these machines are shared), library versions and every
setting. ``--skip-train`` reuses phase 1 from the run folder and the existing JSON and redoes the rest.

The short-budget settings differ from the official long-schedule recipe on purpose and are recorded: a
higher learning rate, and no strong augmentation or multi-scale (``--stop-epoch 0``), which on this set
reached far higher AP in the same number of steps (``benchmarks/results/train_synthetic_settings_sweep_h100.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
CURVE_KEYS = ("minutes", "epoch", "step", "loss", "AP", "AP50", "partial")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0, help="phase 1 training budget (default 30)")
    p.add_argument("--report", type=float, nargs="+", default=[10.0, 30.0], help="minutes to report AP at")
    p.add_argument("--dsp-minutes", type=float, default=3.0, help="phase 2 budget (default 3; 0 skips it)")
    p.add_argument("--imgsz", type=int, default=256, help="training and evaluation size (default 256)")
    p.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    p.add_argument("--lr", type=float, default=1e-3, help="phase 1 learning rate, backbone included (default 1e-3)")
    p.add_argument("--dsp-lr", type=float, default=2e-4, help="phase 2 learning rate (default 2e-4)")
    p.add_argument("--stop-epoch", type=int, default=0, help="first epoch without strong aug (default 0: none)")
    p.add_argument("--warmup-steps", type=int, default=100, help="linear warm-up steps (default 100)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: cores minus workers)")
    p.add_argument("--workers", type=int, default=1, help="data-loading processes (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/bench_train_synthetic"), help="run folder (checkpoints)")
    p.add_argument("--tag", default="cpu", help="suffix of the result files (default cpu)")
    p.add_argument("--skip-train", action="store_true", help="reuse phase 1 (run folder and result JSON)")
    return p.parse_args(argv)


def machine() -> dict[str, object]:
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cuda_used": False,
    }


def ap_at(history: list[dict], minutes: float) -> dict[str, float] | None:
    """The last evaluation at or before ``minutes`` of training."""
    done = [r for r in history if r["minutes"] <= minutes + 1e-9]
    if not done:
        return None
    r = done[-1]
    return {"minutes": round(r["minutes"], 2), "epoch": r["epoch"], "step": r["step"], "AP": r["AP"], "AP50": r["AP50"]}


def deployed_ap(checkpoint: Path, out: Path) -> dict[str, object]:
    """Export with discrete sampling, run the ONNX through the runtime on the val split, score it."""
    try:
        import cv2

        from rtdetr_deploy.coco import coco_box_map
        from rtdetr_deploy.data import ensure_synthetic
        from rtdetr_deploy.export.config import ExportConfig
        from rtdetr_deploy.export.pipeline import export
        from rtdetr_deploy.runtime import Detector

        start = time.perf_counter()
        result = export(ExportConfig(weights=checkpoint, out_dir=out, sampling="discrete"), verbose=False)
        paths = ensure_synthetic()
        ground_truth = json.loads(paths.val_annotations.read_text())
        results = []
        with Detector(result.onnx, backend="onnxruntime", conf=0.0) as detector:
            for image in ground_truth["images"]:
                results += detector(cv2.imread(str(paths.val_images / image["file_name"]))).to_coco(image["id"])
        metrics = coco_box_map(ground_truth, results)
    except Exception as exc:  # recorded rather than raised: the training figures stand on their own
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "onnx": str(result.onnx),
        "graph_sampling": "discrete",
        "verified_against_pytorch": result.report.passed,
        "backend": "onnxruntime (CPU) through rtdetr_deploy.runtime.Detector, conf 0",
        "AP": metrics["AP"],
        "AP50": metrics["AP50"],
        "seconds": round(time.perf_counter() - start, 1),
    }


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2), constrained_layout=True)
    curve = record["curve"]
    minutes = [r["minutes"] for r in curve]
    ax.plot(minutes, [r["AP50"] for r in curve], marker="o", ms=3, color="C0", label="AP50, bilinear (phase 1)")
    ax.plot(minutes, [r["AP"] for r in curve], marker="o", ms=3, color="C1", label="AP, bilinear (phase 1)")
    for point in record["report"].values():
        if point is not None:
            ax.annotate(f"{point['AP50']:.2f}", (point["minutes"], point["AP50"]), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=8)  # fmt: skip
    dsp = record.get("dsp")
    if dsp:
        offset = curve[-1]["minutes"]
        dsp_minutes = [offset + r["minutes"] for r in dsp["curve"]]
        ax.plot(
            dsp_minutes, [r["AP50"] for r in dsp["curve"]], marker="s", ms=3, color="C2", label="AP50, discrete (dsp)"
        )
        ax.plot(dsp_minutes, [r["AP"] for r in dsp["curve"]], marker="s", ms=3, color="C3", label="AP, discrete (dsp)")
    deployed = record.get("deployed_before_dsp", {})
    if "AP50" in deployed:
        ax.scatter([minutes[-1]], [deployed["AP50"]], marker="x", color="C2", label="AP50, swapped to discrete, no dsp")
        ax.scatter([minutes[-1]], [deployed["AP"]], marker="x", color="C3", label="AP, swapped to discrete, no dsp")
    ax.set(xlabel="training minutes (wall clock, evaluation included)", ylabel="COCO box AP, synthetic val",
           ylim=(0, 1), title=record["title"])  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def discrete_finetune(cfg, *, init: Path, lr: float, **changes):  # noqa: ANN001, ANN201
    """``cfg`` (a ``TrainConfig``) as a fine-tune of ``init`` with discrete sampling, the sampling the exports use:
    ``lr`` for the whole network, 20 warm-up steps; ``changes`` set the rest (``out``, ``minutes`` or ``epochs``)."""
    return replace(cfg, init=init, sampling="discrete", lr=lr, backbone_lr=lr, warmup_steps=20, **changes)


def _curve(history: list[dict]) -> list[dict]:
    return [{k: r[k] for k in CURVE_KEYS} for r in history]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from rtdetr_deploy.train import TrainConfig, fit

    cfg = TrainConfig(
        data="synthetic",
        out=args.out,
        preset="tiny",
        imgsz=(args.imgsz, args.imgsz),
        epochs=10_000,
        stop_epoch=args.stop_epoch,
        minutes=args.minutes,
        batch=args.batch,
        workers=args.workers,
        threads=args.threads,
        device="cpu",
        lr=args.lr,
        backbone_lr=args.lr,
        warmup_steps=args.warmup_steps,
        multiscale=args.stop_epoch > 0,
        overwrite=True,
        seed=args.seed,
        progress=False,
    )
    json_path = RESULTS / f"train_synthetic_{args.tag}.json"
    if args.skip_train:
        record = json.loads(json_path.read_text())
        record.pop("deployed", None)
        record["phase_1_reused"] = f"phase 1 as recorded at {record['started']}; later phases re-run"
    else:
        started = {"started": time.strftime("%Y-%m-%d %H:%M"), "load_average_before": os.getloadavg()}
        result = fit(cfg)
        record = {
            "benchmark": "rtdetr-train, tiny preset from scratch, embedded synthetic set (800 train / 100 val)",
            **started,
            "load_average_after": os.getloadavg(),
            "machine": machine(),  # after fit, which sets the thread count
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
            "report": {f"{m:g} min": ap_at(result.history, m) for m in args.report},
            "final": {k: result.history[-1][k] for k in ("minutes", "step", "AP", "AP50", "AP75", "APs", "APm", "APl")},
            "curve": _curve(result.history),
        }
    record["title"] = f"tiny, synthetic set, {args.imgsz} px, {record['machine']['torch_threads']} torch thread(s)"
    record["deployed_before_dsp"] = deployed_ap(cfg.out / "last.pth", cfg.out / "export")
    if args.dsp_minutes > 0:
        dsp_cfg = discrete_finetune(
            cfg,
            init=cfg.out / "last.pth",
            lr=args.dsp_lr,
            out=cfg.out / "dsp",
            minutes=args.dsp_minutes,
            stop_epoch=0,
            multiscale=False,
        )
        dsp = fit(dsp_cfg)
        record["dsp"] = {
            "what": "discrete-sampling fine-tune from phase 1 (sampling offsets frozen), minutes after phase 1",
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(dsp_cfg).items()},
            "final": {k: dsp.history[-1][k] for k in ("minutes", "step", "AP", "AP50", "AP75")},
            "curve": _curve(dsp.history),
        }
        record["deployed_after_dsp"] = deployed_ap(dsp_cfg.out / "last.pth", dsp_cfg.out / "export")
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(record, indent=1))
    plot(record, json_path.with_suffix(".png"))
    summary = {k: record.get(k) for k in ("report", "final", "deployed_before_dsp", "deployed_after_dsp")}
    summary["dsp_final"] = record.get("dsp", {}).get("final")
    print(json.dumps(summary, indent=1))
    print(f"wrote {json_path} and {json_path.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
