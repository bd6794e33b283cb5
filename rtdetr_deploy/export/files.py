"""``ExportFiles``: the files an export wrote, each named for what it is (no position in a list to remember)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..artifacts import is_engine_folder, openvino_weights_path
from ..runtime.engine_sidecar import engine_sidecar_path

__all__ = ["ExportFiles"]


@dataclass(frozen=True)
class ExportFiles:
    """The files an export wrote, by what they are (final paths in the output folder).

    Attributes:
        onnx: the verified FP32 graph.
        report: its ``<stem>.verify.json``.
        variants: precision variant (``fp16``, ``int8``, ``int8-cpu``) -> its ONNX.
        openvino: OpenVINO variant (``openvino-fp32``, ...) -> its ``.xml`` (the ``.bin`` beside it).
        fused: graph name -> its fused-preprocessing ``.fused.onnx``.
        unsimplified: the graph as traced (``--keep-unsimplified``).
        engine: the TensorRT engine; engine_sidecar: its ``.json``.
        targets: third-party engine (``mnn``, ``litert``, ``rknn-<platform>-<precision>``, ``ncnn``) -> its file or
            folder (its JSON sidecar beside it or inside, ``runtime.engine_sidecar``).
    """

    onnx: Path
    report: Path
    variants: dict[str, Path] = field(default_factory=dict)
    openvino: dict[str, Path] = field(default_factory=dict)
    fused: dict[str, Path] = field(default_factory=dict)
    unsimplified: Path | None = None
    engine: Path | None = None
    engine_sidecar: Path | None = None
    targets: dict[str, Path] = field(default_factory=dict)

    def moved_to(self, folder: Path) -> ExportFiles:
        """The same files by name in ``folder`` (where the export moves them from its staging folder)."""

        def moved(path: Path | None) -> Path | None:
            return None if path is None else folder / path.name

        def each(paths: dict[str, Path]) -> dict[str, Path]:
            return {name: folder / path.name for name, path in paths.items()}

        return ExportFiles(
            onnx=folder / self.onnx.name,
            report=folder / self.report.name,
            variants=each(self.variants),
            openvino=each(self.openvino),
            fused=each(self.fused),
            unsimplified=moved(self.unsimplified),
            engine=moved(self.engine),
            engine_sidecar=moved(self.engine_sidecar),
            targets=each(self.targets),
        )

    def paths(self) -> tuple[Path, ...]:
        """Every file, sorted by name, the engine and its sidecar last (as they are written last)."""
        irs = [path for xml in self.openvino.values() for path in (xml, openvino_weights_path(xml))]
        # An engine folder (``.ncnn``) holds its sidecar; the other engines have it beside them.
        engines = [
            path
            for target in self.targets.values()
            for path in ((target,) if is_engine_folder(target) else (target, engine_sidecar_path(target)))
        ]
        graphs = [self.onnx, self.report, *self.variants.values(), *irs, *self.fused.values(), self.unsimplified]
        graphs += engines
        engine = [path for path in (self.engine, self.engine_sidecar) if path is not None]
        return (*sorted((path for path in graphs if path is not None), key=lambda p: p.name), *engine)

    def __iter__(self) -> Iterator[Path]:
        return iter(self.paths())
