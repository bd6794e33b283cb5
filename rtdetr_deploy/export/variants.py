"""Precision variants (FP16 with FP32 islands, Q/DQ INT8) checked against the verified FP32 graph.

Both graphs run in ONNX Runtime on the CPU on the same inputs. INT8 is judged by its *kept AP* (``kept_ap``):
the COCO AP of its detections against FP32's confident detections as pseudo ground truth, a smooth measure of
the detection quality it keeps, as a share of FP32's noise floor (FP32's own kept AP under invisible input
noise), with a threshold calibrated on variants whose labelled AP loss is known (``gates.MIN_KEPT_AP_INT8``,
``benchmarks/acceptance_calibration.py``, ``docs/precision-acceptance.md``). FP16 and BF16, whose errors are
smaller, FP32 on another runtime, and INT8 where FP32's detections are no pseudo ground truth (too few, or
duplicates), are judged on their top detections where the FP32 ranking is decided (score gaps larger than the
precision's margin, see ``agreement``); the kept AP is reported for all.
When nothing is decided (untrained weights score everything alike, and the query selections of the two runs
then differ, so their decoder outputs cannot be paired), FP16 is judged on its raw outputs instead: the
encoder's class scores at every position (the values of the query selection, dense and before any decision)
and the top scores rank by rank. INT8, whose error on untrained weights says nothing about trained ones, is
then only reported. With labelled data the export gates every variant by its loss in COCO AP instead
(``ap_gates``); these rules then stay in the report.

The variant's graphs can run on another runtime than ONNX Runtime (a ``GraphRunner``: the OpenVINO IRs of
``export.openvino``); the FP32 reference always runs in ONNX Runtime. ``fp32`` rules judge an FP32 graph on
another runtime, whose only differences are float rounding; ``bf16`` rules judge OpenVINO's BF16 inference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..agreement import compare_detections
from ..contract import OUTPUT_NAMES
from ..metadata import ModelMetadata
from ..runtime.onnxruntime_backend import read_onnx_metadata
from ..runtime.preprocess import preprocess
from .acceptance import KeptAP
from .gates import MAX_DUPLICATES, MIN_DECIDED, NOT_DECISIVE, NOT_DECISIVE_PREFIX, VariantRules
from .graphs import decision_pairs, run_graph
from .kept_ap import NOISE_LEVELS, duplicate_share, kept_ap, perturbed
from .onnx_export import Probe
from .report import VariantDetections, VariantRaw, VariantReport

__all__ = ["JUDGE_IMAGES", "KEPT_AP_RULE", "ONNXRUNTIME", "GraphRunner", "check_variant"]

# Images the export judges variants (and the sampling swap) on: 16 generated scenes hold about 100 confident
# detections of a trained model, where the 4 of verification hold about 30 and move the kept AP by a few 0.01.
JUDGE_IMAGES = 16
KEPT_AP_RULE = (
    "kept AP against FP32's detections scoring >= {confidence:g} at least {min_kept_ap:.0%} of FP32's own under "
    "invisible input noise (label-free)"
)


@dataclass(frozen=True)
class GraphRunner:
    """How ``check_variant`` reads and runs a variant's files.

    Attributes:
        read_metadata: the ``ModelMetadata`` of a file (its input size and preprocessing make the inputs).
        run: ``graphs.run_graph``'s signature: ``(path, pixels [N, 3, H, W], sizes_wh [N, 2], *, batch, outputs)``
            -> ``{output: [N, ...]}``.
        run_exact: the same, in a mode where the published graph must compute exactly what its probe computes;
            ``None``: ``run``. (OpenVINO's CPU plugin picks each node's BF16 or FP32 from the whole graph, its
            outputs included, so a BF16 probe and its published IR are compared under the f32 hint.)
    """

    read_metadata: Callable[[Path], ModelMetadata]
    run: Callable[..., dict[str, np.ndarray]]
    run_exact: Callable[..., dict[str, np.ndarray]] | None = None


ONNXRUNTIME = GraphRunner(read_metadata=read_onnx_metadata, run=run_graph)


def _index_agreement(reference: list, candidate: list, points: tuple[tuple[str, str], ...]) -> float | None:
    """Fraction of discrete sampling indices the variant computes as FP32 does (a diagnostic: upstream values
    move in another precision, so some indices move too)."""
    same = total = 0
    for (kind, _), (_, ref_outcome), (_, outcome) in zip(points, reference, candidate, strict=True):
        if kind == "index":
            same += int((ref_outcome == outcome).sum())
            total += ref_outcome.size
    return same / total if total else None


def _published_equals_probe(
    runner: GraphRunner,
    probe: Path,
    deploy: Path,
    outputs: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
    inputs: tuple[np.ndarray, np.ndarray],
    batch: tuple[int, int, int],
) -> bool:
    """Whether the published graph computes exactly the deploy outputs of its probe (under ``runner.run_exact``
    when the runner has one, else on the ``outputs`` already computed)."""
    if runner.run_exact is not None:
        outputs = tuple(runner.run_exact(path, *inputs, batch=batch, outputs=OUTPUT_NAMES) for path in (probe, deploy))
    return all(np.array_equal(outputs[0][n], outputs[1][n]) for n in OUTPUT_NAMES)


def check_variant(
    fp32: Probe,
    variant_probe: Path,
    variant_deploy: Path,
    images_bgr: list[np.ndarray],
    *,
    precision: str,
    rules: VariantRules,
    runner: GraphRunner = ONNXRUNTIME,
) -> VariantReport:
    """Judge a variant (its probe and its published graph, run by ``runner``: ONNX Runtime on the CPU by default)
    against the FP32 probe (always run in ONNX Runtime) on ``images_bgr``.

    Returns:
        The report of the published file: ``rule`` (what decided), ``kept_ap``, ``detections``, ``raw``,
        ``index_agreement``, ``published_equals_probe``, the ``rules`` and one line per failure in ``failures``.
    """
    metadata = runner.read_metadata(variant_deploy)
    pixels, sizes_wh = preprocess(images_bgr, input_size=metadata.input_size, preprocessing=metadata.preprocessing)
    reference = run_graph(fp32.path, pixels, sizes_wh, batch=metadata.batch)
    candidate = runner.run(variant_probe, pixels, sizes_wh, batch=metadata.batch)
    published = runner.run(variant_deploy, pixels, sizes_wh, batch=metadata.batch, outputs=OUTPUT_NAMES)
    agreement = compare_detections(reference, published, topn=min(100, metadata.topk), margin=rules.margin)
    if fp32.decisions[0][0] != "selection":
        raise ValueError(f"the probe's first decision is {fp32.decisions[0]}, not the query selection")
    encoder_delta = np.abs(reference["decision.0.values"] - candidate["decision.0.values"])
    kept = _kept_report(fp32, images_bgr, metadata, reference, published, rules)
    count = len(fp32.decisions)
    report = VariantReport(
        file=variant_deploy.name,
        precision=precision,
        rule=_rule_name(rules, agreement["compared"], kept),
        kept_ap=kept,
        detections=VariantDetections(
            decided=agreement["compared"],
            candidates=agreement["candidates"],
            matched=agreement["matched"],
            max_score_delta=agreement["max_score_delta"],
            max_box_delta_px=agreement["max_box_delta_px"],
        ),
        raw=VariantRaw(
            encoder_scores=int(encoder_delta.size),
            within_tolerance=float((encoder_delta <= rules.raw_logits).mean()),
            max_encoder_logit_delta=float(encoder_delta.max()),
            max_sorted_score_delta=agreement["max_sorted_score_delta"],
        ),
        index_agreement=_index_agreement(
            decision_pairs(reference, count), decision_pairs(candidate, count), fp32.decisions
        ),
        published_equals_probe=_published_equals_probe(
            runner, variant_probe, variant_deploy, (candidate, published), (pixels, sizes_wh), metadata.batch
        ),
        rules=rules,
        failures=(),
    )
    return replace(report, failures=tuple(_failures(report, rules, precision.upper())))


def _kept_report(
    fp32: Probe,
    images_bgr: list[np.ndarray],
    metadata: ModelMetadata,
    reference: dict[str, np.ndarray],
    published: dict[str, np.ndarray],
    rules: VariantRules,
) -> KeptAP:
    """The variant's kept AP against FP32's confident detections, FP32's noise floor (its own kept AP on the
    images with invisible noise) and their ratio (``relative``)."""
    kept = kept_ap(reference, published, confidence=rules.confidence)
    noisy, sizes_wh = preprocess(
        perturbed(images_bgr), input_size=metadata.input_size, preprocessing=metadata.preprocessing
    )
    floor = kept_ap(
        reference,
        run_graph(fp32.path, noisy, sizes_wh, batch=metadata.batch, outputs=OUTPUT_NAMES),
        confidence=rules.confidence,
    ).ap
    return replace(
        kept,
        duplicates=duplicate_share(reference, confidence=rules.confidence),
        noise_floor=floor,
        noise_levels=NOISE_LEVELS,
        relative=kept.ap / floor if kept.ap is not None and floor else None,
        min_relative=rules.min_kept_ap,
    )


def _rule_name(rules: VariantRules, decided: int, kept: KeptAP) -> str:
    """What decides: the kept AP (FP32 has enough confident detections, and they look like a trained detector's:
    few duplicates), else the decided ranking, or (nothing decided) the raw outputs."""
    pseudo_truth = kept.relative is not None and (kept.duplicates or 0.0) <= MAX_DUPLICATES
    if rules.min_kept_ap is not None and kept.pseudo_objects >= MIN_DECIDED and pseudo_truth:
        return KEPT_AP_RULE.format(min_kept_ap=rules.min_kept_ap, confidence=rules.confidence)
    if decided >= MIN_DECIDED:
        return f"decided ranking (score margin {rules.margin:g})"
    return NOT_DECISIVE


def _failures(report: VariantReport, rules: VariantRules, name: str) -> list[str]:
    """Why the variant fails its rules (empty: it passes): its kept AP, its decided detections, or (nothing
    decided) its raw outputs, and a published graph that differs from its probe."""
    failures = []
    kept, detections, raw = report.kept_ap, report.detections, report.raw
    indices = report.index_agreement  # None: bilinear sampling has no indices
    diagnostic = "" if indices is None else f"; discrete sampling indices equal to FP32's: {indices:.1%}"
    if report.rule.startswith("kept AP") and kept.relative < rules.min_kept_ap:
        failures.append(
            f"{name} keeps AP {kept.ap:.3f} against FP32's {kept.pseudo_objects} confident detections, "
            f"{kept.relative:.0%} of FP32's noise floor {kept.noise_floor:.3f} (< {rules.min_kept_ap:.0%}, "
            f"label-free rule){diagnostic}"
        )
    if report.rule.startswith("decided") and detections.matched < rules.min_matched:
        failures.append(
            f"{name} keeps only {detections.matched:.1%} of FP32's {detections.decided} decided top detections "
            f"(< {rules.min_matched:.0%}){diagnostic}"
        )
    if report.rule == NOT_DECISIVE and rules.judge_raw and raw.within_tolerance < 0.99:
        failures.append(
            f"{NOT_DECISIVE_PREFIX}: only {raw.within_tolerance:.1%} of {name}'s encoder class scores lie within "
            f"{rules.raw_logits:g} of FP32's; max difference {raw.max_encoder_logit_delta:.3g}"
        )
    if report.rule == NOT_DECISIVE and rules.judge_raw and raw.max_sorted_score_delta > rules.margin:
        failures.append(
            f"{NOT_DECISIVE_PREFIX}: {name}'s top scores differ from FP32's by up to "
            f"{raw.max_sorted_score_delta:.3g} rank by rank (> {rules.margin:g})"
        )
    if not report.published_equals_probe:
        failures.append(f"the published {name} graph computes other detections than its verified probe")
    return failures
