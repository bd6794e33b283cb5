"""The side-by-side accuracy table of ``rtdetr-eval`` (markdown) and its JSON report."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..atomic import atomic_path
from ..tables import markdown_table
from .evaluate import EvalData, ModelScore

__all__ = ["SCHEMA", "eval_report", "markdown_tables", "write_json", "write_markdown"]

SCHEMA = "rtdetr-eval/1"
COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def eval_report(scores: Sequence[ModelScore], data: EvalData, *, device: str) -> dict[str, Any]:
    """JSON-ready: ``{"models": [{"model", "backend", "precision", "AP", ..., "delta_AP", "latency_ms_p50"}],
    "data", "split", "images", "device"}``, models in the order given; ``delta_AP`` is against the first."""
    first = scores[0].metrics["AP"] if scores else 0.0
    models = []
    for score in scores:
        models.append(
            {
                "model": str(score.model),
                "backend": score.backend,
                "backend_description": score.description,
                "precision": score.precision,
                **score.metrics,
                "delta_AP": score.metrics["AP"] - first,
                "latency_ms_p50": score.latency_ms,
                "per_class": score.per_class,
            }
        )
    return {
        "schema": SCHEMA,
        "models": models,
        "data": data.name,
        "split": data.split,
        "images": data.num_images,
        "device": device,
    }


def _metric(value: float) -> str:
    return "-" if value < 0 else f"{value:.3f}"


def markdown_tables(report: dict[str, Any], *, per_class: bool = False) -> str:
    """The side-by-side table (and, with ``per_class``, AP per class and model)."""
    header = ["model", "backend", "precision", *COLUMNS, "ΔAP", "p50 ms/img"]
    rows = [
        [
            Path(m["model"]).name,
            m["backend"],
            m["precision"],
            *(_metric(m[c]) for c in COLUMNS),
            "-" if i == 0 else f"{m['delta_AP']:+.3f}",
            f"{m['latency_ms_p50']:.1f}",
        ]
        for i, m in enumerate(report["models"])
    ]
    lines = [
        f"COCO box metrics on {report['data']} ({report['split']}, {report['images']} images), {report['device']}:",
        "",
        *markdown_table(header, rows),
    ]
    if per_class and report["models"]:
        names = list(report["models"][0]["per_class"])
        lines += ["", "AP per class:", ""]
        class_rows = [[name, *(_metric(m["per_class"].get(name, -1.0)) for m in report["models"])] for name in names]
        lines += markdown_table(["class", *(Path(m["model"]).name for m in report["models"])], class_rows)
    return "\n".join(lines) + "\n"


def write_json(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the report (atomically)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return Path(path)


def write_markdown(text: str, path: str | os.PathLike[str]) -> Path:
    """Write the tables (atomically)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
