"""The export report: typed records of what an export checked and wrote, kept as ``<stem>.verify.json``.

``ExportReport.to_json`` writes the report with its ``schema`` version, and ``ExportReport.from_json`` reads it
back into the same records (``records``). A section only some exports have is an optional field (``OPTIONAL``
metadata, ``None`` when absent, left out of the JSON): adding one is a field line here and the code that fills it.
The files an export wrote are ``files.ExportFiles``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..atomic import atomic_path
from ..metadata import Preprocessing
from ..records import FLAT, OPTIONAL, from_jsonable, key, to_jsonable
from .acceptance import KeptAP, RefusedVariant, SwapCost
from .gates import NOT_DECISIVE, Tolerances, VariantRules

__all__ = [
    "AccuracyGate",
    "AccuracyReport",
    "KeptAP",
    "DecisionPoint",
    "DecisionReport",
    "DetectionAgreement",
    "EXPORT_REPORT_SCHEMA",
    "ExportReport",
    "PreprocessingCheck",
    "RawAgreement",
    "SpeedKnobsReport",
    "RefusedVariant",
    "SwapCost",
    "SwapReport",
    "VariantDetections",
    "VariantRaw",
    "VariantReport",
    "VerificationReport",
]

# Version of the ``*.verify.json`` layout; raise it when a field changes meaning or goes (adding one does not).
EXPORT_REPORT_SCHEMA = 1


@dataclass(frozen=True)
class DecisionPoint:
    """Ties and errors at one decision point of the traced graph (a query selection or a sampling index)."""

    where: str
    kind: str
    ties: int
    disagreements: int


@dataclass(frozen=True)
class DecisionReport:
    """Every decision of the ONNX graph compared with PyTorch's (``models.decisions``).

    Attributes:
        points: decision points in the graph.
        compared: decisions compared (selected queries and sampling indices, all points).
        ties: decisions that differ at a tie (PyTorch then takes ONNX Runtime's outcome).
        disagreements: decisions that differ away from any tie: errors.
        first_disagreement: the first error, described; ``None`` when there is none.
        per_point: the counts of each point.
    """

    points: int
    compared: int
    ties: int
    disagreements: int
    first_disagreement: str | None
    per_point: tuple[DecisionPoint, ...]


@dataclass(frozen=True)
class RawAgreement:
    """Raw outputs (logits, normalised cxcywh boxes) of every query with the decisions held equal.

    Attributes:
        queries: queries compared (all images).
        within_tolerance: fraction of them within ``Tolerances.logits`` and ``Tolerances.boxes``.
        max_logit_delta: largest absolute logit difference.
        max_box_delta: largest absolute normalised box difference.
    """

    queries: int
    within_tolerance: float
    max_logit_delta: float
    max_box_delta: float


@dataclass(frozen=True)
class DetectionAgreement:
    """The published graph's top detections against PyTorch's where the ranking is decided (``agreement``).

    Attributes:
        rule: what decided: the decided ranking with its margin, or ``gates.NOT_DECISIVE``.
        decided: decided top detections compared; candidates: top detections before the decided filter.
        matched: fraction of decided detections found again (``None``: none decided).
        min_image_matched: the worst image's fraction (``None`` when not decisive).
        max_score_delta: largest score difference of matched detections.
        max_box_delta_px: largest box coordinate difference of matched detections, in pixels.
    """

    rule: str
    decided: int
    candidates: int
    matched: float | None
    min_image_matched: float | None
    max_score_delta: float
    max_box_delta_px: float

    @property
    def decisive(self) -> bool:
        return self.rule != NOT_DECISIVE


@dataclass(frozen=True)
class PreprocessingCheck:
    """The preprocessing the file's metadata records (``file``) and the one the PyTorch model takes (``model``)."""

    file: Preprocessing
    model: Preprocessing


@dataclass(frozen=True)
class VerificationReport:
    """The FP32 graph verified against PyTorch (``verify.verify_against_pytorch``); ``passed`` without failures."""

    DERIVED: ClassVar[tuple[str, ...]] = ("passed",)

    images: int
    input_size: tuple[int, int]
    topk: int
    preprocessing: PreprocessingCheck
    decisions: DecisionReport
    raw: RawAgreement
    detections: DetectionAgreement
    published_equals_probe: bool
    tolerances: Tolerances
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class VariantDetections:
    """A variant's top detections against FP32's decided ones (fields as in ``DetectionAgreement``)."""

    decided: int
    candidates: int
    matched: float | None
    max_score_delta: float
    max_box_delta_px: float


@dataclass(frozen=True)
class VariantRaw:
    """A variant's raw outputs against FP32's, what decides when no detection is decided.

    Attributes:
        encoder_scores: encoder class scores compared (every position, every class).
        within_tolerance: fraction within ``VariantRules.raw_logits``.
        max_encoder_logit_delta: largest encoder logit difference.
        max_sorted_score_delta: largest difference of the top scores, rank by rank.
    """

    encoder_scores: int
    within_tolerance: float
    max_encoder_logit_delta: float
    max_sorted_score_delta: float


@dataclass(frozen=True)
class VariantReport:
    """A precision variant judged against the FP32 graph (``variants.check_variant``).

    Attributes:
        file: the published file's name.
        precision: ``fp32``, ``fp16``, ``bf16`` or ``int8``.
        rule: what decided: the decided ranking with its margin, or ``gates.NOT_DECISIVE``.
        index_agreement: fraction of discrete sampling indices equal to FP32's (``None``: bilinear sampling).
        published_equals_probe: the published file computes exactly what its verified probe computes.
        rules: the ``gates.VariantRules`` applied.
        failures: one line per failed rule.
        kept_ap: its kept AP against FP32's confident detections, with FP32's noise floor.
        target: what the target converter records beside (the OpenVINO version, precision hint, weights file,
            quantization settings, ...); written among the report's own keys.
    """

    DERIVED: ClassVar[tuple[str, ...]] = ("passed",)

    file: str
    precision: str
    rule: str
    detections: VariantDetections
    raw: VariantRaw
    index_agreement: float | None
    published_equals_probe: bool
    rules: VariantRules
    failures: tuple[str, ...]
    kept_ap: KeptAP | None = field(default=None, metadata=OPTIONAL)
    target: dict[str, object] = field(default_factory=dict, metadata=FLAT)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def decisive(self) -> bool:
        return self.rule != NOT_DECISIVE


@dataclass(frozen=True)
class SwapReport:
    """Discrete against bilinear sampling on the same weights (``verify.sampling_swap_report``).

    Attributes:
        top: detections compared per image.
        agreement: fraction of bilinear's top detections discrete finds again (same label, IoU >= 0.9).
        per_image_agreement: the same, image by image.
        mean_abs_score_delta / max_abs_score_delta: change of the top scores, rank by rank.
        max_box_delta_px: largest box shift of the matched detections, in pixels.
        kept_ap: kept AP of discrete against bilinear's confident detections (``kept_ap``).
        cost: the verdict on the swap (``swap.judge_swap``).
    """

    top: int
    agreement: float | None
    per_image_agreement: tuple[float | None, ...]
    mean_abs_score_delta: float
    max_abs_score_delta: float
    max_box_delta_px: float
    kept_ap: KeptAP | None = field(default=None, metadata=OPTIONAL)
    cost: SwapCost | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True)
class AccuracyGate:
    """One graph's COCO AP on the labelled data and whether its loss against FP32 is accepted.

    Attributes:
        file: the graph's file name.
        delta_ap: its AP minus FP32's.
        allowed_drop: the AP it may lose (``None`` for the FP32 graph itself).
        accepted: ``delta_ap >= -allowed_drop``.
        metrics: the COCO metrics (``AP``, ``AP50``, ...), written among the gate's own keys.
    """

    file: str
    delta_ap: float = field(metadata=key("delta_AP"))
    allowed_drop: float | None
    accepted: bool
    metrics: dict[str, float] = field(default_factory=dict, metadata=FLAT)

    @property
    def ap(self) -> float:
        return float(self.metrics["AP"])


@dataclass(frozen=True)
class AccuracyReport:
    """The export's AP gates (``rtdetr-export --eval-data``): data, split, image count and one gate per graph."""

    data: str
    split: str
    images: int
    gates: dict[str, AccuracyGate]


@dataclass(frozen=True)
class SpeedKnobsReport:
    """The decoder layers and queries the graph uses, out of the trained numbers (``RTDETR.set_speed_knobs``).

    The verification compares the graph with the PyTorch model told the same knobs.
    """

    decoder_layers: int
    trained_decoder_layers: int
    queries: int
    trained_queries: int


@dataclass(frozen=True)
class ExportReport:
    """Everything an export checked, as written to ``<stem>.verify.json``.

    Attributes:
        verification: the FP32 graph against PyTorch.
        op_census: op type -> count in the published FP32 graph.
        swap: discrete against bilinear sampling on the same weights.
        variants: precision variant (``artifacts.VARIANTS`` name) -> its report.
        metadata: the model metadata stamped into every file (``ModelMetadata.to_props``).
        timings_s: step -> seconds.
        openvino: OpenVINO variant (``openvino-fp32``, ...) -> its report; ``None`` when none was written.
        fused: the fused-preprocessing verification (``fused.write_fused``); ``None`` without ``--fuse-preprocess``.
        accuracy: the AP gates; ``None`` without labelled data.
        int8_sensitivity: the INT8 sensitivity table (``int8_sensitivity``); ``None`` unless asked for.
        classes: where the class names and category ids came from (``ModelInfo.names_from``).
        speed_knobs: decoder layers and queries used (``None`` in reports written before they were recorded).
        targets: third-party engine -> its conversion record and verdict against ONNX Runtime
            (``targets.write_targets``); ``None`` when none was asked for.
        refused: variant -> what was refused and why (``refusal``); ``None`` when nothing was.
        schema: ``EXPORT_REPORT_SCHEMA`` of the code that wrote the file.
    """

    DERIVED: ClassVar[tuple[str, ...]] = ("passed",)

    verification: VerificationReport
    op_census: dict[str, int]
    swap: SwapReport
    variants: dict[str, VariantReport]
    metadata: dict[str, str]
    timings_s: dict[str, float]
    openvino: dict[str, VariantReport] | None = field(default=None, metadata=OPTIONAL)
    fused: dict[str, object] | None = field(default=None, metadata=OPTIONAL)
    accuracy: AccuracyReport | None = field(default=None, metadata=OPTIONAL)
    int8_sensitivity: dict[str, object] | None = field(default=None, metadata=OPTIONAL)
    classes: str | None = field(default=None, metadata=OPTIONAL)
    speed_knobs: SpeedKnobsReport | None = field(default=None, metadata=OPTIONAL)
    targets: dict[str, dict[str, object]] | None = field(default=None, metadata=OPTIONAL)
    refused: dict[str, RefusedVariant] | None = field(default=None, metadata=OPTIONAL)
    schema: int = EXPORT_REPORT_SCHEMA

    @property
    def passed(self) -> bool:
        """The FP32 graph passed verification (a written report always has: a failed export writes none) and no
        variant was refused."""
        return self.verification.passed and not self.refused

    def all_variants(self) -> dict[str, VariantReport]:
        """The ONNX and OpenVINO variants together, by variant name."""
        return {**self.variants, **(self.openvino or {})}

    def to_json(self) -> str:
        """The report as indented JSON, with its ``schema`` and ``passed``."""
        return json.dumps(to_jsonable(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ExportReport:
        """Read a report written by ``to_json``.

        Raises:
            ValueError: not a report, or one written with a newer schema than this code reads.
        """
        data = json.loads(text)
        schema = data.get("schema", EXPORT_REPORT_SCHEMA) if isinstance(data, dict) else None
        if not isinstance(schema, int) or schema > EXPORT_REPORT_SCHEMA:
            raise ValueError(
                f"export report schema {schema!r} is newer than this version reads ({EXPORT_REPORT_SCHEMA}); "
                "update rtdetr-deploy"
            )
        return from_jsonable(cls, data)

    def write(self, path: Path) -> Path:
        """Write the report to ``path`` atomically; returns ``path``."""
        with atomic_path(path) as tmp:
            tmp.write_text(self.to_json())
        return path

    @classmethod
    def read(cls, path: str | Path) -> ExportReport:
        """``from_json`` of the file at ``path``."""
        return cls.from_json(Path(path).read_text())
