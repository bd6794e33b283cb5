"""Train the ``tiny`` checkpoint that ships inside the package, on the embedded synthetic set, and record how.

Phase 1 trains ``tiny`` from scratch with the short-budget CPU settings (256 px, learning rate 1e-3 with the
backbone, no strong augmentation); phase 2 continues from phase 1's EMA weights at a tenth of the learning
rate. The EMA weights of phase 2 are written with FP16 storage (anchors kept FP32) as a package checkpoint
whose ``provenance`` entry holds this script's settings, the training time, the machine and the AP reached:

    python tools/train_demo_weights.py                      # about an hour on 2 CPU cores
    python tools/train_demo_weights.py --epochs 1 1 --train-images 16 --dest /tmp/w.pth   # a smoke run

Phase 3 fine-tunes phase 2's result with discrete sampling (the sampling offsets frozen, the official "dsp"
recipe) at the phase 2 learning rate, so that the default (discrete) export of the shipped model keeps its
accuracy; ``--discrete-only`` runs phase 3 alone, from the bilinear checkpoint already at ``--dest``:

    python tools/train_demo_weights.py --discrete-only      # a few minutes on 2 CPU cores

Writes ``rtdetr_deploy/data/weights/tiny_synthetic.pth`` (``--dest``, bilinear),
``rtdetr_deploy/data/weights/tiny_synthetic_discrete.pth`` (``--discrete-dest``) and their records
``benchmarks/results/demo_weights.json`` and ``benchmarks/results/demo_weights_discrete.json``.
Epoch counts, not minutes, bound the run, so a busy machine makes it
slower but not different; the learning rate is constant after the warm-up, so a phase stopped at epoch N of a
longer plan equals a phase planned for N epochs (``--reuse-phase1`` takes such a phase 1 from the run folder).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from train_synthetic import discrete_finetune, machine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DEST = ROOT / "rtdetr_deploy" / "data" / "weights" / "tiny_synthetic.pth"
DISCRETE_DEST = ROOT / "rtdetr_deploy" / "data" / "weights" / "tiny_synthetic_discrete.pth"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, nargs=2, default=[87, 20], metavar=("PHASE1", "PHASE2"))
    p.add_argument("--lr", type=float, default=1e-3, help="phase 1 learning rate (phase 2: a tenth)")
    p.add_argument("--imgsz", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--train-images", type=int, default=800, help="synthetic training images (the demo's: 800)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 plus one loader worker on 2 cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/demo_weights"))
    p.add_argument("--dest", type=Path, default=DEST, help="where the shipped checkpoint goes")
    p.add_argument("--json", type=Path, default=RESULTS / "demo_weights.json")
    p.add_argument("--discrete-epochs", type=int, default=4, help="phase 3: fine-tuning with discrete sampling")
    p.add_argument("--discrete-dest", type=Path, default=DISCRETE_DEST, help="where the discrete checkpoint goes")
    p.add_argument("--discrete-json", type=Path, default=RESULTS / "demo_weights_discrete.json")
    p.add_argument(
        "--discrete-only",
        action="store_true",
        help="run phase 3 alone, starting from the bilinear checkpoint at --dest",
    )
    p.add_argument(
        "--reuse-phase1",
        action="store_true",
        help="take phase 1 from OUT/phase1/last.pth (its recorded history and time) instead of training it again",
    )
    return p.parse_args(argv)


def _recorded_phase(checkpoint: Path) -> tuple[int, list[dict], float]:
    """Steps, per-epoch history and minutes of a finished phase, read back from its last checkpoint."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["train"]
    return int(state["step"]), list(state["history"]), float(state["history"][-1]["minutes"])


def shipped_checkpoint(source: Path, dest: Path, provenance: dict) -> Path:
    """Re-save the EMA weights of ``source`` with FP16 storage and ``provenance`` (loads with ``load_model``)."""
    import torch

    from rtdetr_deploy.atomic import atomic_path
    from rtdetr_deploy.models.checkpoint import FORMAT_NAME, FORMAT_VERSION, read_checkpoint

    checkpoint = read_checkpoint(source)
    keep_fp32 = ("decoder.anchors", "decoder.valid_mask")
    weights = {
        k: v.half() if v.is_floating_point() and k not in keep_fp32 else v for k, v in checkpoint.state_dict.items()
    }
    meta = checkpoint.meta
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        **{k: meta[k] for k in ("config", "num_classes", "class_names", "category_ids", "input_size", "sampling")},
        "model": weights,
        "provenance": provenance,
    }
    with atomic_path(dest) as tmp:
        torch.save(payload, tmp)
    return dest


def _discrete_phase(args: argparse.Namespace, base, start: Path) -> int:  # noqa: ANN001
    """Phase 3: fine-tune ``start`` with discrete sampling and ship its EMA weights to ``--discrete-dest``."""
    from rtdetr_deploy.train import fit

    phase3 = discrete_finetune(
        base, init=start, lr=args.lr / 10, out=args.out / "phase3_discrete", epochs=args.discrete_epochs
    )
    started, load_before, clock = time.strftime("%Y-%m-%d %H:%M"), os.getloadavg(), time.perf_counter()
    third = fit(phase3)
    minutes = (time.perf_counter() - clock) / 60
    provenance = {
        "script": "tools/train_demo_weights.py",
        "what": f"{start.name} fine-tuned with discrete sampling (offsets frozen) on the embedded synthetic set, "
        "EMA weights, FP16 storage",
        "started": started,
        "training_minutes": round(minutes, 1),
        "steps": third.steps,
        "phases": [{k: str(v) if isinstance(v, Path) else v for k, v in asdict(phase3).items()}],
        "val_metrics_discrete": {k: third.history[-1][k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")},
        "machine": machine(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
    }
    provenance = json.loads(json.dumps(provenance, default=str))
    dest = shipped_checkpoint(third.last, args.discrete_dest, provenance)
    record = {**provenance, "checkpoint": str(dest), "bytes": dest.stat().st_size}
    record["curve"] = [{k: r[k] for k in ("epoch", "step", "minutes", "loss", "AP", "AP50")} for r in third.history]
    args.discrete_json.parent.mkdir(parents=True, exist_ok=True)
    args.discrete_json.write_text(json.dumps(record, indent=1))
    print(json.dumps({k: record[k] for k in ("training_minutes", "steps", "val_metrics_discrete", "bytes")}, indent=1))
    print(f"wrote {dest} and {args.discrete_json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from rtdetr_deploy.train import TrainConfig

    phase1 = TrainConfig(
        data="synthetic",
        out=args.out / "phase1",
        preset="tiny",
        imgsz=(args.imgsz, args.imgsz),
        epochs=args.epochs[0],
        stop_epoch=0,
        batch=args.batch,
        workers=1,
        threads=args.threads,
        device="cpu",
        lr=args.lr,
        backbone_lr=args.lr,
        warmup_steps=100,
        multiscale=False,
        overwrite=True,
        seed=args.seed,
        synthetic_images=args.train_images,
        progress=False,
    )
    if not args.discrete_only:
        _bilinear_phases(args, phase1)
    return _discrete_phase(args, phase1, args.dest)


def _bilinear_phases(args: argparse.Namespace, phase1) -> Path:  # noqa: ANN001
    """Phases 1 and 2 (bilinear sampling); ships phase 2's EMA weights to ``--dest``."""
    from rtdetr_deploy.train import fit

    phase2 = replace(
        phase1,
        out=args.out / "phase2",
        epochs=args.epochs[1],
        lr=args.lr / 10,
        backbone_lr=args.lr / 10,
        warmup_steps=20,
        init=phase1.out / "last.pth",
    )
    started, load_before, clock = time.strftime("%Y-%m-%d %H:%M"), os.getloadavg(), time.perf_counter()
    if args.reuse_phase1:
        steps1, history1, minutes1 = _recorded_phase(phase1.out / "last.pth")
        if history1[-1]["epoch"] != args.epochs[0]:
            raise SystemExit(f"{phase1.out / 'last.pth'} ends at epoch {history1[-1]['epoch']}, not {args.epochs[0]}")
    else:
        first = fit(phase1)
        steps1, history1, minutes1 = first.steps, first.history, first.history[-1]["minutes"]
        clock = time.perf_counter()
    second = fit(phase2)
    minutes = minutes1 + (time.perf_counter() - clock) / 60
    final = {k: second.history[-1][k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}
    provenance = {
        "script": "tools/train_demo_weights.py",
        "what": "tiny preset trained from scratch on the embedded synthetic set (seed 0), EMA weights, FP16 storage",
        "started": started,
        "training_minutes": round(minutes, 1),
        "steps": steps1 + second.steps,
        "phases": [
            {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()} for cfg in (phase1, phase2)
        ],
        "val_metrics_bilinear": final,
        "machine": machine(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
    }
    # Plain JSON types only (torch's version string is a str subclass), so torch.load(weights_only=True) reads it.
    provenance = json.loads(json.dumps(provenance, default=str))
    dest = shipped_checkpoint(second.last, args.dest, provenance)
    record = {**provenance, "checkpoint": str(dest), "bytes": dest.stat().st_size}
    record["curve"] = [
        {"phase": phase, **{k: r[k] for k in ("epoch", "step", "minutes", "loss", "AP", "AP50")}}
        for phase, history in ((1, history1), (2, second.history))
        for r in history
    ]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1))
    print(json.dumps({k: record[k] for k in ("training_minutes", "steps", "val_metrics_bilinear", "bytes")}, indent=1))
    print(f"wrote {dest} and {args.json}")
    return dest


if __name__ == "__main__":
    sys.exit(main())
