"""Check the TensorRT and cuda-python names our code uses against the committed per-release API lists.

The uses are read from the AST of our modules, never by importing TensorRT or CUDA:

- TensorRT: every attribute chain on the module (``trt.X``, ``trt.X.y``, ``trt.X.Y.z``, also ``self._trt``),
  and every attribute of a TensorRT object, typed by the variable holding it (``engine``, ``context``, ...,
  ``self._engine``; see ``TRT_OBJECTS``), by a constructor call (``trt.Runtime(...).x``) or by a method whose
  result type is known (``RETURNS``).
- cuda-python: every ``cudart.f(...)`` / ``self._rt.f(...)`` call and every ``self._call("f", ...)`` with its
  positional argument count, every ``cudart.Enum.member``, and the attributes read from a struct a call returned
  in the same function (``err, props = cudart.cudaGetDeviceProperties(0)``; ``props.major``).

The lists (``data/tensorrt-<tag>.json``, ``data/<cuda distribution>-<version>.json``) come from
``extract_tensorrt.py`` and ``extract_cuda.py``; see this folder's README for their sources.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent / "data"
TRT_ROOTS = {"trt", "_trt"}
TRT_OBJECTS = {
    "builder": "Builder",
    "network": "INetworkDefinition",
    "parser": "OnnxParser",
    "config": "IBuilderConfig",
    "profile": "IOptimizationProfile",
    "cache": "ITimingCache",
    "runtime": "Runtime",
    "engine": "ICudaEngine",
    "context": "IExecutionContext",
    "error": "ParserError",
}
RETURNS = {
    ("Builder", "create_network"): "INetworkDefinition",
    ("Builder", "create_builder_config"): "IBuilderConfig",
    ("Builder", "create_optimization_profile"): "IOptimizationProfile",
    ("IBuilderConfig", "create_timing_cache"): "ITimingCache",
    ("IBuilderConfig", "get_timing_cache"): "ITimingCache",
    ("Runtime", "deserialize_cuda_engine"): "ICudaEngine",
    ("ICudaEngine", "create_execution_context"): "IExecutionContext",
    ("OnnxParser", "get_error"): "ParserError",
}
PASSTHROUGH = {"_checked"}  # helpers that return their first argument
CUDA_ROOTS = {"cudart", "_rt", "rt"}
CUDA_STRUCTS = {"cudaGetDeviceProperties": "cudaDeviceProp"}  # function -> the struct it returns


@dataclass(frozen=True, order=True)
class Use:
    """One name our code uses: ``chain`` from the module (``("BuilderFlag", "TF32")``) or from a class
    (``("IExecutionContext", "set_input_shape")`` with ``on_object``); ``nargs`` for cuda-python calls."""

    path: str
    line: int
    chain: tuple[str, ...]
    on_object: bool = False
    nargs: int | None = None

    def __str__(self) -> str:
        where = f"{Path(self.path).name}:{self.line}"
        call = f"({self.nargs} args)" if self.nargs is not None else ""
        return f"{where} {'.'.join(self.chain)}{call}"


def _chain(node: ast.expr) -> tuple[str | None, list[str]]:
    """Root name and attribute names of ``a.b.c`` (``self._x`` roots count as ``_x``)."""
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        if node.id == "self" and names:
            return names.pop(), names[::-1]
        return node.id, names[::-1]
    return None, names[::-1]


class _TrtVisitor(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.uses: set[Use] = set()

    def _type(self, node: ast.expr) -> str | None:
        """The TensorRT class of an expression's value, when this module can tell."""
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id in PASSTHROUGH and node.args:
                return self._type(node.args[0])
            root, names = _chain(node.func)
            if root in TRT_ROOTS and len(names) == 1:
                return names[0]
            if isinstance(node.func, ast.Attribute):
                owner = self._type(node.func.value)
                return RETURNS.get((owner, node.func.attr)) if owner else None
            return None
        root, names = _chain(node)
        if not names and root is not None:
            return TRT_OBJECTS.get(root.lstrip("_"))
        return None

    def visit_Attribute(self, node: ast.Attribute) -> None:
        root, names = _chain(node)
        if root in TRT_ROOTS and names:
            self.uses.add(Use(self.path, node.lineno, tuple(names)))
            return
        owner = self._type(node.value)
        if owner is not None:
            self.uses.add(Use(self.path, node.lineno, (owner, node.attr), on_object=True))
        self.generic_visit(node)


def tensorrt_uses(paths: Iterable[Path], source: dict[Path, str] | None = None) -> list[Use]:
    """Every TensorRT name the modules at ``paths`` use (``source`` may give a module's text instead)."""
    uses: set[Use] = set()
    for path in paths:
        visitor = _TrtVisitor(str(path))
        text = (source or {}).get(path)
        visitor.visit(ast.parse(text if text is not None else Path(path).read_text()))
        uses |= visitor.uses
    return sorted(uses)


def _class_members(api: dict[str, Any], name: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """Members of a class and of its bases (pybind11 ``py::class_<T, Base>`` template arguments)."""
    entry = api["classes"].get(name)
    if entry is None or name in seen:
        return set()
    members = set(entry["members"])
    for base in entry["bases"]:
        cpp = base.split("::")[-1].strip()
        for other, info in api["classes"].items():
            if info["cpp"].split("::")[-1] == cpp and other != name:
                members |= _class_members(api, other, seen | {name})
    return members


def missing_tensorrt(uses: Iterable[Use], api: dict[str, Any]) -> list[Use]:
    """The uses one TensorRT release's API list does not have (names only under ``#if`` count as missing)."""
    conditional = set(api.get("conditional", ()))
    missing = []
    for use in uses:
        head, *rest = use.chain
        ok = use.on_object or (head in api["module"] and head not in conditional)
        owner = head
        for name in rest:
            if not ok:
                break
            nested = f"{owner}.{name}"
            if nested in api["classes"] and nested not in conditional:
                owner = nested
                continue
            ok = name in _class_members(api, owner) and nested not in conditional
            owner = nested
        if not ok:
            missing.append(use)
    return missing


class _CudaVisitor(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.uses: set[Use] = set()
        self.structs: dict[str, str] = {}

    @staticmethod
    def _called(node: ast.Call) -> tuple[str | None, int | None, int]:
        """The CUDA function a call names, its argument count (None with ``*args``), and where its result
        sits in the returned tuple (``cudart.f`` returns ``(err, result)``, ``self._call`` drops ``err``)."""
        starred = any(isinstance(a, ast.Starred) for a in node.args)
        root, names = _chain(node.func)
        if root in CUDA_ROOTS and len(names) == 1:
            return names[0], None if starred else len(node.args), 1
        if root == "_call" and not names and node.args and isinstance(node.args[0], ast.Constant):
            return str(node.args[0].value), None if starred else len(node.args) - 1, 0
        return None, None, 0

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        saved, self.structs = self.structs, {}
        for sub in ast.walk(node):
            if not (isinstance(sub, ast.Assign) and isinstance(sub.value, ast.Call)):
                continue
            name, _, index = self._called(sub.value)
            struct = CUDA_STRUCTS.get(name or "")
            for target in sub.targets if struct else []:
                elements = target.elts if isinstance(target, ast.Tuple) else [target]
                if index < len(elements) and isinstance(elements[index], ast.Name):
                    self.structs[elements[index].id] = struct
        self.generic_visit(node)
        self.structs = saved

    def visit_Call(self, node: ast.Call) -> None:
        name, nargs, _ = self._called(node)
        if name is not None:
            self.uses.add(Use(self.path, node.lineno, (name,), nargs=nargs))
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        root, names = _chain(node)
        if root in CUDA_ROOTS and len(names) == 2:
            self.uses.add(Use(self.path, node.lineno, tuple(names)))
        elif root in self.structs and len(names) == 1:
            self.uses.add(Use(self.path, node.lineno, (self.structs[root], names[0]), on_object=True))
        self.generic_visit(node)


def cuda_uses(paths: Iterable[Path], source: dict[Path, str] | None = None) -> list[Use]:
    """Every cuda-python runtime name the modules at ``paths`` use, calls with their argument counts."""
    uses: set[Use] = set()
    for path in paths:
        visitor = _CudaVisitor(str(path))
        text = (source or {}).get(path)
        visitor.visit(ast.parse(text if text is not None else Path(path).read_text()))
        uses |= visitor.uses
    return sorted(uses)


def runtime_module(api: dict[str, Any]) -> dict[str, Any]:
    """The module ``engine_format.import_cudart`` picks in a release: ``cuda.bindings.runtime``, else
    ``cuda.cudart``."""
    modules = api["modules"]
    module = modules.get("cuda.bindings.runtime") or modules["cuda.cudart"]
    return modules[module["reexports"]] if "reexports" in module else module


def missing_cuda(uses: Iterable[Use], api: dict[str, Any]) -> list[Use]:
    """The uses one cuda-python release lacks: unknown names, or calls with an argument count it refuses."""
    module = runtime_module(api)
    missing = []
    for use in uses:
        if use.on_object:
            ok = use.chain[1] in module["structs"].get(use.chain[0], ())
        elif len(use.chain) == 2:
            ok = use.chain[1] in module["enums"].get(use.chain[0], ())
        else:
            counts = module["functions"].get(use.chain[0])
            ok = counts is not None and (use.nargs is None or counts[0] <= use.nargs <= counts[1])
        if not ok:
            missing.append(use)
    return missing


def load(pattern: str) -> dict[str, dict[str, Any]]:
    """The committed API lists matching ``pattern`` (``tensorrt-*.json``, ``cuda-*.json``), by file stem."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(DATA_DIR.glob(pattern))}
