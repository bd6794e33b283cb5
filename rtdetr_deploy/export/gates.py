"""What an export accepts: verification tolerances, the rules a precision variant must keep, and the COCO AP a
variant may lose against FP32. Every threshold of the export lives here, once.

Three levels decide, from the strongest evidence to the weakest:

- with labelled data (``--eval-data``), a variant is accepted by its loss in COCO AP against the FP32 graph
  (``DEFAULT_MAX_AP_DROP``, overridable per precision; ``FP32_AP_TOLERANCE`` for an FP32 graph on another runtime);
- without it, INT8 by its kept AP (``kept_ap``: its detections scored against FP32's confident ones as pseudo
  ground truth) as a share of FP32's noise floor (``VariantRules.min_kept_ap``, calibrated in
  ``docs/precision-acceptance.md``) where FP32's detections are a usable pseudo ground truth, and every variant
  else by the top detections it keeps where FP32's ranking is decided (``VariantRules``), when at least
  ``MIN_DECIDED`` detections are decided;
- when nothing is decided (untrained weights score everything alike) the check is ``NOT_DECISIVE`` and the raw
  outputs are compared instead.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_MAX_AP_DROP",
    "FP32_AP_TOLERANCE",
    "MAX_DUPLICATES",
    "MIN_KEPT_AP_INT8",
    "MIN_PSEUDO_OBJECTS",
    "MIN_SWAP_AP_RATIO",
    "MIN_SWAP_KEPT_AP",
    "MIN_DECIDED",
    "NOT_DECISIVE",
    "NOT_DECISIVE_PREFIX",
    "TOLERANCES",
    "Tolerances",
    "VARIANT_RULES",
    "VariantRules",
]

# Decided top detections needed for an agreement to count.
MIN_DECIDED = 10
# The rule a report records when too few detections were decided to judge by them.
NOT_DECISIVE = "untrained weights: agreement not decisive, raw outputs compared"
# How a failure found on the raw outputs of an undecided comparison begins.
NOT_DECISIVE_PREFIX = "agreement not decisive (untrained weights)"
# COCO AP a variant may lose against the FP32 ONNX, by precision (``rtdetr-export --max-<precision>-drop``).
DEFAULT_MAX_AP_DROP: dict[str, float] = {"fp16": 0.005, "int8": 0.02, "bf16": 0.01}
# An FP32 graph on another runtime (the OpenVINO FP32 IR) differs from the ONNX by float rounding only.
FP32_AP_TOLERANCE = 0.001
# Share of FP32's noise floor an INT8 variant's kept AP must reach without labelled data. Calibrated on INT8
# variants of the shipped tiny whose labelled AP loss is known (benchmarks/results/acceptance_calibration.json,
# docs/precision-acceptance.md): those within the labelled gate keep >= 0.82 of the noise floor, those beyond <= 0.78.
MIN_KEPT_AP_INT8 = 0.8
# Share of duplicate confident detections (``kept_ap.duplicate_share``) above which FP32's detections are no
# pseudo ground truth (untrained weights) and the decided ranking judges instead.
MAX_DUPLICATES = 0.2
# The sampling swap (``swap``): kept AP of discrete against bilinear sampling below which the export warns
# (label-free), the discrete graph's AP over the bilinear model's below which it warns (labelled data), and the
# confident bilinear detections the label-free measure needs.
MIN_SWAP_KEPT_AP = 0.75
MIN_SWAP_AP_RATIO = 0.95
MIN_PSEUDO_OBJECTS = 10


@dataclass(frozen=True)
class Tolerances:
    """What verification of the FP32 graph against PyTorch accepts.

    Attributes:
        logits: absolute, on the raw class logits of a query (decisions held equal).
        boxes: absolute, on the raw normalised cxcywh boxes of a query (decisions held equal).
        scores: absolute, on the scores of matched detections; also the margin of a decided ranking.
        box_fraction: on matched pixel boxes, as a fraction of the image's larger side.
        min_matched: fraction of the decided top detections (and of the raw queries) that must agree.
        min_decided: decided detections needed for the detection rule to count (else: not decisive).
        index_tie_ulps: a discrete index differing within this many float32 ULPs of a pixel boundary is a tie.
        selection_tol: a query selection differing within this score difference (relative above 1) is a tie.
    """

    logits: float = 1e-3
    boxes: float = 1e-4
    scores: float = 1e-4
    box_fraction: float = 1e-4
    min_matched: float = 0.99
    min_decided: int = MIN_DECIDED
    index_tie_ulps: float = 64.0
    selection_tol: float = 1e-4


@dataclass(frozen=True)
class VariantRules:
    """What a precision variant must keep of the FP32 graph when no labelled data decides by AP.

    Attributes:
        margin: the score difference the precision may cause; the margin of a decided ranking.
        min_matched: fraction of FP32's decided top detections the variant must find again.
        raw_logits: difference of the encoder's class logits to FP32's accepted when nothing is decided.
        judge_raw: judge the raw outputs when nothing is decided (else only report them).
        min_kept_ap: share of FP32's noise floor (``kept_ap.perturbed``) the variant's kept AP (``kept_ap``) must
            reach; when set, this label-free rule decides instead of ``min_matched``.
        confidence: lowest FP32 score of a pseudo object for the kept AP.
    """

    margin: float
    min_matched: float
    raw_logits: float
    judge_raw: bool
    min_kept_ap: float | None = None
    confidence: float = 0.5


TOLERANCES = Tolerances()
VARIANT_RULES = {
    "fp32": VariantRules(margin=1e-3, min_matched=0.99, raw_logits=1e-3, judge_raw=True),
    "bf16": VariantRules(margin=0.05, min_matched=0.95, raw_logits=0.1, judge_raw=True),
    "fp16": VariantRules(margin=0.02, min_matched=0.99, raw_logits=0.05, judge_raw=True),
    "int8": VariantRules(margin=0.05, min_matched=0.9, raw_logits=0.5, judge_raw=False, min_kept_ap=MIN_KEPT_AP_INT8),
}
