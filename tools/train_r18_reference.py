"""Train an R18 (``r18vd``) reference detector on the embedded synthetic set, as far as a CPU budget allows.

INT8 accuracy means nothing on random weights, so the INT8 and OpenVINO figures are measured on trained models:
the shipped ``tiny`` checkpoint and this R18. It trains from scratch (no ImageNet backbone can be downloaded
here) with the short-budget settings (256 px, learning rate 1e-3 with the backbone, no strong augmentation) for
``--minutes``, then fine-tunes ``--dsp-minutes`` with discrete sampling (the sampling the exports use). The
settings, the machine, the training time and the AP reached go to ``benchmarks/results/r18_reference.json``; the
checkpoints stay in ``--out`` (``runs/r18_reference``, not in git: this script regenerates them).

    python tools/train_r18_reference.py --minutes 90 --dsp-minutes 20
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from train_synthetic import discrete_finetune, machine

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=90.0, help="bilinear training budget (default 90)")
    p.add_argument("--dsp-minutes", type=float, default=20.0, help="discrete fine-tune budget (default 20)")
    p.add_argument("--imgsz", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("runs/r18_reference"))
    p.add_argument("--json", type=Path, default=RESULTS / "r18_reference.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from rtdetr_deploy.train import TrainConfig, fit

    bilinear = TrainConfig(
        data="synthetic",
        out=args.out / "bilinear",
        preset="r18vd",
        imgsz=(args.imgsz, args.imgsz),
        epochs=10_000,
        stop_epoch=0,
        minutes=args.minutes,
        batch=args.batch,
        workers=1,
        threads=args.threads,
        device="cpu",
        lr=args.lr,
        backbone_lr=args.lr,
        warmup_steps=100,
        multiscale=False,
        overwrite=True,
        progress=False,
    )
    discrete = discrete_finetune(
        bilinear, init=bilinear.out / "last.pth", lr=args.lr / 5, out=args.out / "discrete", minutes=args.dsp_minutes
    )
    started, load_before = time.strftime("%Y-%m-%d %H:%M"), os.getloadavg()
    phases = [fit(bilinear)]
    if args.dsp_minutes > 0:
        phases.append(fit(discrete))
    record = {
        "what": "r18vd trained from scratch on the embedded synthetic set (800 train / 100 val), EMA weights",
        "started": started,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "machine": machine(),
        "phases": [
            {
                "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
                "steps": result.steps,
                "minutes": result.history[-1]["minutes"],
                "final": {k: result.history[-1][k] for k in ("epoch", "AP", "AP50", "AP75")},
                "checkpoint": str(result.last),
            }
            for cfg, result in zip((bilinear, discrete), phases, strict=False)
        ],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps([p["final"] for p in record["phases"]]))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
