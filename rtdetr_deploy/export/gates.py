"""What an export accepts: verification tolerances, the rules a precision variant must keep, and the COCO AP a
variant may lose against FP32. Every threshold of the export lives here, once.

Three levels decide, from the strongest evidence to the weakest:

- with labelled data (``--eval-data``), a variant is accepted by its loss in COCO AP against the FP32 graph
  (``DEFAULT_MAX_AP_DROP``, overridable per precision; ``FP32_AP_TOLERANCE`` for an FP32 graph on another runtime);
- without it, by the top detections it keeps where FP32's ranking is decided (``VariantRules``), when at least
  ``MIN_DECIDED`` detections are decided;
- when nothing is decided (untrained weights score everything alike) the check is ``NOT_DECISIVE`` and the raw
  outputs are compared instead.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_MAX_AP_DROP",
    "FP32_AP_TOLERANCE",
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
    """

    margin: float
    min_matched: float
    raw_logits: float
    judge_raw: bool


TOLERANCES = Tolerances()
VARIANT_RULES = {
    "fp32": VariantRules(margin=1e-3, min_matched=0.99, raw_logits=1e-3, judge_raw=True),
    "bf16": VariantRules(margin=0.05, min_matched=0.95, raw_logits=0.1, judge_raw=True),
    "fp16": VariantRules(margin=0.02, min_matched=0.99, raw_logits=0.05, judge_raw=True),
    "int8": VariantRules(margin=0.05, min_matched=0.9, raw_logits=0.5, judge_raw=False),
}
