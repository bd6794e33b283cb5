"""Extract cuda-python's CUDA runtime API (function names and argument counts, enums, struct properties).

Two sources, both public: the Cython sources a cuda-python / cuda-bindings wheel ships (``cuda/cudart.pyx`` in
cuda-python 12.1, ``cuda/bindings/runtime.pyx`` from 12.6 on; some 13.x wheels ship none), or, for a release
whose wheel has no sources, the signatures of the installed module (``inspect.signature`` of its Cython
functions, which carry their own parameter lists). Only names and counts are written. Usage::

    python tools/tensorrt_api/extract_cuda.py --wheel cuda_python-12.1.0-*.whl --wheel cuda_bindings-12.9.0-*.whl
    python tools/tensorrt_api/extract_cuda.py --installed   # the cuda-bindings importable here

Each file ``data/<distribution>-<version>.json`` (``cuda-python-12.1.0.json``, ``cuda-bindings-13.0.0.json``)
maps a module (``cuda.bindings.runtime``, ``cuda.cudart``) to ``{"functions": {name: [required, total]},
"enums": {name: [members]}, "structs": {name: [properties]}, "constants": [names]}``, or to
``{"reexports": "cuda.bindings.runtime"}`` for the deprecated ``cuda.cudart`` shim of 12.6 to 12.9.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import inspect
import json
import re
import zipfile
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent / "data"
SOURCES = {"cuda/bindings/runtime.pyx": "cuda.bindings.runtime", "cuda/cudart.pyx": "cuda.cudart"}
_SHIM = re.compile(r"^from cuda\.bindings\.runtime import \*", re.M)


def _split_params(text: str) -> list[str]:
    params, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            params.append(current.strip())
            current = ""
        else:
            current += char
    return [p for p in [*params, current.strip()] if p]


def parse_pyx(text: str) -> dict[str, Any]:
    """Module-level ``def`` functions, ``class X(IntEnum)`` members, ``cdef class`` properties, constants."""
    functions: dict[str, list[int]] = {}
    for match in re.finditer(r"^def (\w+)\(((?:[^()]|\([^()]*\))*)\)(?:\s*->\s*[^:\n]+)?:\s*$", text, re.M):
        params = [p for p in _split_params(match.group(2)) if not p.startswith("*")]
        functions[match.group(1)] = [sum("=" not in p for p in params), len(params)]
    enums: dict[str, list[str]] = {}
    structs: dict[str, list[str]] = {}
    for match in re.finditer(r"^(cdef class|class) (\w+)(\([^)]*\))?:\n(.*?)(?=^\S)", text, re.M | re.S):
        kind, name, bases, body = match.groups()
        if kind == "class" and bases and "Enum" in bases:
            enums[name] = sorted(set(re.findall(r"^    (\w+) = ", body, re.M)))
        elif kind == "cdef class":
            structs[name] = sorted(set(re.findall(r"^    @property\n    def (\w+)\(self\)", body, re.M)))
    constants = sorted(set(re.findall(r"^([A-Za-z]\w*) = ", text, re.M)))
    return {"functions": dict(sorted(functions.items())), "enums": enums, "structs": structs, "constants": constants}


def from_wheel(path: Path) -> dict[str, Any]:
    """The runtime modules whose ``.pyx`` the wheel ships; ``cuda.cudart`` shims re-export the runtime."""
    with zipfile.ZipFile(path) as wheel:
        names = set(wheel.namelist())
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        header = wheel.read(meta).decode()
        modules: dict[str, Any] = {}
        for source, module in SOURCES.items():
            if source in names:
                text = wheel.read(source).decode()
                modules[module] = {"reexports": "cuda.bindings.runtime"} if _SHIM.search(text) else parse_pyx(text)
    distribution = re.search(r"^Name: (.+)$", header, re.M).group(1).strip()
    version = re.search(r"^Version: (.+)$", header, re.M).group(1).strip()
    if not modules:
        raise SystemExit(f"{path}: ships none of {sorted(SOURCES)}; use --installed with that release instead")
    return {
        "distribution": distribution,
        "version": version,
        "source": f"{path.name}: {sorted(SOURCES)}",
        "modules": modules,
    }


def _introspect(module: Any) -> dict[str, Any]:
    functions: dict[str, list[int]] = {}
    enums: dict[str, list[str]] = {}
    structs: dict[str, list[str]] = {}
    constants = []
    for name in sorted(dir(module)):
        if name.startswith("_"):
            continue
        value = getattr(module, name)
        if inspect.isclass(value) and value.__module__ != module.__name__:
            continue
        if inspect.isclass(value) and hasattr(value, "__members__"):
            enums[name] = sorted(value.__members__)
        elif inspect.isclass(value):
            structs[name] = sorted(n for n, v in vars(value).items() if inspect.isdatadescriptor(v) and n[0] != "_")
        elif callable(value) and type(value).__name__ == "cython_function_or_method":
            params = [p for p in inspect.signature(value).parameters.values() if p.kind <= p.POSITIONAL_OR_KEYWORD]
            functions[name] = [sum(p.default is p.empty for p in params), len(params)]
        elif not inspect.ismodule(value) and not callable(value):
            constants.append(name)
    return {"functions": functions, "enums": enums, "structs": structs, "constants": constants}


def from_installed() -> dict[str, Any]:
    """The runtime modules importable in this interpreter (no CUDA driver needed to import them)."""
    modules = {}
    for name in ("cuda.bindings.runtime",):
        modules[name] = _introspect(importlib.import_module(name))
    version = importlib.metadata.version("cuda-bindings")
    return {
        "distribution": "cuda-bindings",
        "version": version,
        "source": f"inspect.signature of the installed cuda-bindings {version} (its wheel ships no .pyx)",
        "modules": modules,
    }


def dump(data: dict[str, Any]) -> str:
    """JSON with one line per function, enum or struct, so that a release's change reads as a short diff."""
    header = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in data.items() if k != "modules")
    modules = []
    for name, module in data["modules"].items():
        sections = []
        for section, value in module.items():
            if isinstance(value, dict):
                inner = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
                sections.append(f"   {json.dumps(section)}: {{\n{inner}\n   }}")
            else:
                sections.append(f"   {json.dumps(section)}: {json.dumps(value)}")
        modules.append(f"  {json.dumps(name)}: {{\n" + ",\n".join(sections) + "\n  }")
    return "{\n" + header + ',\n "modules": {\n' + ",\n".join(modules) + "\n }\n}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, action="append", default=[], help="a cuda-python/cuda-bindings wheel")
    parser.add_argument("--installed", action="store_true", help="introspect the cuda-bindings installed here")
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="folder for <distribution>-<version>.json")
    args = parser.parse_args(argv)
    results = [from_wheel(path) for path in args.wheel] + ([from_installed()] if args.installed else [])
    args.out.mkdir(parents=True, exist_ok=True)
    for data in results:
        path = args.out / f"{data['distribution']}-{data['version']}.json"
        path.write_text(dump(data))
        counts = {m: len(v.get("functions", {})) for m, v in data["modules"].items()}
        print(f"{path}: {data['distribution']} {data['version']}, functions per module {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
