"""Refusing a precision variant while keeping what verified.

A variant that fails its gate (the AP gate with labelled data, else its label-free rules in ``variants``) is
refused: its files leave the staging folder before anything is published, the export report records it under
``refused`` with the reason, and the export then ends with an ``ExportError`` that names the variant, the
reason and the files that were written (the FP32 ONNX, the report and every accepted variant).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from ..artifacts import OPENVINO_VARIANTS, onnx_path, openvino_path, openvino_weights_path, precision_of_variant
from .acceptance import RefusedVariant
from .files import ExportFiles
from .report import AccuracyReport, VariantReport

__all__ = ["drop_refused", "refusal_message", "refused_variants", "variant_files"]


def refused_variants(variants: dict[str, VariantReport], accuracy: AccuracyReport | None) -> dict[str, str]:
    """``{variant: reason}`` for every variant that fails its gate: with labelled data (``accuracy``) the AP gate
    decides, else the variant's own rules."""
    refused = {}
    for variant, variant_report in variants.items():
        if accuracy is not None:
            gate = accuracy.gates[variant]
            if not gate.accepted:
                precision = precision_of_variant(variant)
                flag = f"see --max-{precision}-drop" if precision != "fp32" else "FP32 differs by rounding only"
                refused[variant] = (
                    f"loses {-gate.delta_ap:.4f} AP against FP32 ({gate.ap:.4f} vs "
                    f"{accuracy.gates['fp32'].ap:.4f}; allowed {gate.allowed_drop:g}, {flag})"
                )
        elif not variant_report.passed:
            refused[variant] = "; ".join(variant_report.failures)
    return refused


def variant_files(folder: Path, stem: str, variant: str) -> list[Path]:
    """Every file an export writes for ``variant`` in ``folder`` (graph, OpenVINO weights, fused graph)."""
    if variant in OPENVINO_VARIANTS:
        xml = openvino_path(folder, stem, OPENVINO_VARIANTS[variant])
        return [xml, openvino_weights_path(xml)]
    graph = onnx_path(folder, stem, variant)
    return [graph, graph.with_name(f"{graph.stem}.fused{graph.suffix}")]


def drop_refused(
    files: ExportFiles, stem: str, refused: dict[str, str]
) -> tuple[ExportFiles, dict[str, RefusedVariant] | None]:
    """Delete the refused variants' files from the staging folder ``files`` lie in; the files left and the
    report's ``refused`` section (``None`` when nothing was refused)."""
    if not refused:
        return files, None
    for variant in refused:
        for path in variant_files(files.onnx.parent, stem, variant):
            path.unlink(missing_ok=True)

    def kept(paths: dict[str, Path]) -> dict[str, Path]:
        return {variant: path for variant, path in paths.items() if variant not in refused}

    left = replace(files, variants=kept(files.variants), openvino=kept(files.openvino), fused=kept(files.fused))
    section = {
        variant: RefusedVariant(files=tuple(p.name for p in variant_files(Path(), stem, variant)), reason=reason)
        for variant, reason in refused.items()
    }
    return left, section


def refusal_message(refused: dict[str, str], stem: str, written: Iterable[Path]) -> str:
    """One line: each refused variant (its main file) and why, then the verified files that were written."""
    parts = [f"refused {variant_files(Path(), stem, v)[0].name}: {reason}" for v, reason in refused.items()]
    return "; ".join(parts) + "; written (verified): " + ", ".join(path.name for path in written)
