"""Extract the names TensorRT's Python bindings expose, per release tag, from NVIDIA/TensorRT's public sources.

Reads, at one git tag of a clone of the NVIDIA/TensorRT repository, the pybind11 sources ``python/src/**/*.cpp``
and the wheel's ``python/packaging/bindings_wheel/tensorrt/__init__.py``, and writes only what a Python caller
can name: module-level names and, per class or enum, its members (methods, properties, enum values). No code is
copied. Usage::

    python tools/tensorrt_api/extract_tensorrt.py --git-dir /path/to/TensorRT/.git v10.0.0 v10.7.0 v11.1

The recognised pybind11 forms: ``py::class_<T, ...>(scope, "Name", ...)`` (also ``... var{scope, "Name"}`` and
``auto var = py::class_<...>(...)``), ``py::enum_``, ``py::bind_vector``/``bind_map``, then the chained or
variable-prefixed ``.def("x")``, ``.def_static``, ``.def_property*``, ``.def_read*``, ``.value("X")``,
``.def(py::init...)`` (recorded as ``__init__``), ``.export_values()``, and module-level ``m.def``/``m.attr``.
Preprocessor blocks: ``EXPORT_ALL_BINDINGS`` is 1 (the full ``tensorrt`` module, not lean/dispatch); names
under any other condition are recorded as ``conditional`` and are not taken as guaranteed.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
INIT_PY = "python/packaging/bindings_wheel/tensorrt/__init__.py"
DEFINES = {"EXPORT_ALL_BINDINGS": True}
MEMBER_CALLS = {
    "def",
    "def_static",
    "def_property",
    "def_property_readonly",
    "def_property_static",
    "def_property_readonly_static",
    "def_readwrite",
    "def_readonly",
    "def_readwrite_static",
    "def_readonly_static",
    "value",
}
CLASS_MAKERS = {"class_", "enum_", "bind_vector", "bind_map"}
_TOKEN = re.compile(
    r'(?P<raw>R"(?P<delim>[^(\s]*)\(.*?\)(?P=delim)")|(?P<str>"(?:\\.|[^"\\])*")|(?P<chr>\'(?:\\.|[^\'\\])*\')'
    r"|(?P<id>[A-Za-z_]\w*)|(?P<num>\d[\w.]*)|(?P<op>::|->|\S)",
    re.S,
)


@dataclass
class Token:
    kind: str  # "str", "id", "op"
    text: str
    conditional: bool


@dataclass
class Api:
    """What one tag exposes: module names and class -> members, each split into certain and conditional."""

    module: set[str] = field(default_factory=set)
    classes: dict[str, set[str]] = field(default_factory=dict)
    cpp_types: dict[str, str] = field(default_factory=dict)
    bases: dict[str, list[str]] = field(default_factory=dict)
    conditional: set[str] = field(default_factory=set)

    def add(self, owner: str | None, name: str, conditional: bool) -> None:
        if owner is None:
            self.module.add(name)
            qualified = name
        else:
            self.classes.setdefault(owner, set()).add(name)
            qualified = f"{owner}.{name}"
        if conditional:
            self.conditional.add(qualified)


def _condition(line: str) -> bool | None:
    """True/False for a directive this tool can decide, None for any other condition."""
    match = re.match(r"#\s*(if|ifdef|ifndef|elif)\s+(!?)\s*(\w+)\s*(?://.*)?$", line.strip())
    if not match or match.group(3) not in DEFINES:
        return None
    value = DEFINES[match.group(3)]
    return (not value) if (match.group(2) or match.group(1) == "ifndef") else value


def _preprocess(text: str) -> list[tuple[str, bool]]:
    """Source lines outside false preprocessor blocks, each flagged when inside an undecided block."""
    text = re.sub(r"\\\n", " ", text)
    stack: list[bool | None] = []
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        directive = re.match(r"#\s*(\w+)", stripped)
        if directive and directive.group(1) in ("if", "ifdef", "ifndef"):
            stack.append(_condition(stripped))
        elif directive and directive.group(1) in ("elif", "else"):
            previous = stack.pop() if stack else None
            stack.append(None if previous is None or directive.group(1) == "elif" else not previous)
        elif directive and directive.group(1) == "endif":
            if stack:
                stack.pop()
        elif directive:
            continue
        elif False not in stack:
            lines.append((line, None in stack))
    return lines


def tokenize(text: str) -> list[Token]:
    """C++ tokens (comments dropped, string literals decoded to their text), flagged when conditional."""
    tokens: list[Token] = []
    source = "\n".join(f"{line}\x00{int(flag)}" for line, flag in _preprocess(text))
    source = re.sub(r"/\*.*?\*/", " ", source, flags=re.S)
    for line in source.split("\n"):
        code, _, flag = line.rpartition("\x00")
        code = re.sub(r'//(?=(?:[^"]*"[^"]*")*[^"]*$).*', "", code)
        for match in _TOKEN.finditer(code):
            if match.group("str"):
                tokens.append(Token("str", match.group("str")[1:-1], flag == "1"))
            elif match.group("id"):
                tokens.append(Token("id", match.group("id"), flag == "1"))
            elif match.group("op"):
                tokens.append(Token("op", match.group("op"), flag == "1"))
    return tokens


def statements(tokens: list[Token]) -> list[list[Token]]:
    """Split at ``;``, ``{`` and ``}`` outside parentheses; braced initialisers (``> name{``) stay whole."""
    result: list[list[Token]] = []
    current: list[Token] = []
    depth = 0
    braces: list[bool] = []
    for index, token in enumerate(tokens):
        text = token.text if token.kind == "op" else None
        if text in ("(", "["):
            depth += 1
        elif text in (")", "]"):
            depth -= 1
        elif text == "{":
            init = depth > 0 or (index >= 2 and tokens[index - 1].kind == "id" and tokens[index - 2].text == ">")
            braces.append(init)
            if init:
                depth += 1
            else:
                result.append(current)
                current = []
                continue
        elif text == "}":
            if braces and braces.pop():
                depth -= 1
            else:
                result.append(current)
                current = []
                continue
        elif text == ";" and depth == 0:
            result.append(current)
            current = []
            continue
        current.append(token)
    result.append(current)
    return [s for s in result if s]


def _skip_template(stmt: list[Token], start: int) -> tuple[int, str]:
    """Index after the ``<...>`` starting at ``start`` and its text."""
    depth, index = 0, start
    while index < len(stmt):
        depth += {"<": 1, ">": -1}.get(stmt[index].text, 0)
        index += 1
        if depth == 0:
            break
    return index, " ".join(t.text for t in stmt[start + 1 : index - 1])


def _top_level_args(template: str) -> list[str]:
    args, depth, current = [], 0, ""
    for char in template:
        depth += {"<": 1, ">": -1}.get(char, 0)
        if char == "," and depth == 0:
            args.append(current.strip())
            current = ""
        else:
            current += char
    return [a for a in [*args, current.strip()] if a]


def _class_header(stmt: list[Token], api: Api, variables: dict[str, str]) -> tuple[str | None, int]:
    """The class a statement declares (registered in ``api``), and where its chain starts; (None, 0) if none."""
    for index in range(len(stmt) - 3):
        if not (stmt[index].text == "py" and stmt[index + 1].text == "::" and stmt[index + 2].text in CLASS_MAKERS):
            continue
        after, template = _skip_template(stmt, index + 3)
        var = None
        if after < len(stmt) and stmt[after].kind == "id":
            var, after = stmt[after].text, after + 1
        elif index >= 2 and stmt[index - 1].text == "=" and stmt[index - 2].kind == "id":
            var = stmt[index - 2].text
        if after + 3 >= len(stmt) or stmt[after].text not in ("(", "{") or stmt[after + 3].kind != "str":
            return None, 0
        scope, name_token = stmt[after + 1].text, stmt[after + 3]
        owner = variables.get(scope) if scope != "m" else None
        qualified = f"{owner}.{name_token.text}" if owner else name_token.text
        api.add(owner, name_token.text, name_token.conditional)
        api.classes.setdefault(qualified, set())
        args = _top_level_args(template)
        api.cpp_types[qualified] = args[0] if args else ""
        api.bases[qualified] = args[1:]
        if var:
            variables[var] = qualified
        return qualified, after
    return None, 0


def _chain_members(stmt: list[Token], start: int, owner: str | None, api: Api) -> None:
    """Record ``.def("x")``-style members at the statement's outer level, from ``start`` on."""
    depth = 0
    exported: list[tuple[str, bool]] = []
    for index in range(start, len(stmt)):
        text = stmt[index].text if stmt[index].kind == "op" else None
        if text in ("(", "[", "{"):
            depth += 1
            continue
        if text in (")", "]", "}"):
            depth -= 1
            continue
        if depth != 0 or text != "." or index + 3 >= len(stmt):
            continue
        call, paren, first = stmt[index + 1], stmt[index + 2], stmt[index + 3]
        if paren.text != "(":
            continue
        if call.text in MEMBER_CALLS and first.kind == "str":
            api.add(owner, first.text, first.conditional or call.conditional)
            if call.text == "value":
                exported.append((first.text, first.conditional))
        elif call.text == "def" and owner is not None and first.text in ("py", "init"):
            api.add(owner, "__init__", call.conditional)
        elif call.text == "attr" and owner is None and first.kind == "str":
            api.add(None, first.text, first.conditional)
        elif call.text == "export_values" and owner is not None:
            parent = owner.rpartition(".")[0] or None
            for name, conditional in exported:
                api.add(parent, name, conditional)


def parse_bindings(sources: list[str], api: Api) -> None:
    """Add every binding the pybind11 ``sources`` declare to ``api``."""
    variables: dict[str, str] = {}
    for text in sources:
        for stmt in statements(tokenize(text)):
            owner, start = _class_header(stmt, api, variables)
            if owner is None:
                head = stmt[0].text
                if len(stmt) > 2 and stmt[1].text == "." and head in variables:
                    owner, start = variables[head], 0
                elif len(stmt) > 2 and stmt[1].text == "." and head == "m":
                    owner, start = None, 0
                else:
                    continue
            _chain_members(stmt, start, owner, api)


def _constant_test(test: ast.expr) -> bool | None:
    """The value of an ``if`` test of string constants (``==``, ``!=``, ``and``, ``or``, ``not``), else None."""
    if isinstance(test, ast.Constant):
        return bool(test.value)
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        value = _constant_test(test.operand)
        return None if value is None else not value
    if isinstance(test, ast.BoolOp):
        values = [_constant_test(v) for v in test.values]
        if None in values:
            return None
        return all(values) if isinstance(test.op, ast.And) else any(values)
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], (ast.Eq, ast.NotEq)):
        left, right = test.left, test.comparators[0]
        if isinstance(left, ast.Constant) and isinstance(right, ast.Constant):
            return (left.value == right.value) == isinstance(test.ops[0], ast.Eq)
    return None


def _python_statements(body: list[ast.stmt], conditional: bool = False) -> list[tuple[ast.stmt, bool]]:
    """Top-level statements, entering ``if``/``try``/``with`` blocks; flagged when under an undecided test."""
    flat: list[tuple[ast.stmt, bool]] = []
    for node in body:
        flat.append((node, conditional))
        if isinstance(node, ast.If):
            value = _constant_test(node.test)
            if value is not False:
                flat.extend(_python_statements(node.body, conditional or value is None))
            if value is not True:
                flat.extend(_python_statements(node.orelse, conditional or value is None))
        elif isinstance(node, (ast.Try, ast.With)):
            for block in ("body", "orelse", "finalbody"):
                flat.extend(_python_statements(getattr(node, block, []), conditional or block != "body"))
    return flat


def parse_init(text: str, api: Api) -> None:
    """Names the wheel's ``__init__.py`` adds: functions, assignments, and ``Class.attr = ...`` members."""
    text = text.replace("##TENSORRT_MODULE##", "tensorrt")
    tree = ast.parse(re.sub(r"##(\w+)##", r"PLACEHOLDER_\1", text))
    for node, conditional in _python_statements(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            api.add(None, node.name, conditional)
        targets = node.targets if isinstance(node, ast.Assign) else []
        for target in targets:
            if isinstance(target, ast.Name):
                api.add(None, target.id, conditional)
            elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                api.add(target.value.id, target.attr, conditional)


def _git(git_dir: Path, *args: str) -> str:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True, text=True).stdout


def extract(git_dir: Path, tag: str) -> dict[str, object]:
    """The API of ``tag`` as a JSON-ready dict (sorted, so the committed files diff cleanly)."""
    commit = _git(git_dir, "rev-parse", f"{tag}^{{commit}}").strip()
    files = sorted(
        p for p in _git(git_dir, "ls-tree", "-r", "--name-only", commit, "python/src").split() if p.endswith(".cpp")
    )
    api = Api()
    parse_bindings([_git(git_dir, "show", f"{commit}:{path}") for path in files], api)
    parse_init(_git(git_dir, "show", f"{commit}:{INIT_PY}"), api)
    return {
        "tag": tag,
        "commit": commit,
        "sources": [*files, INIT_PY],
        "module": sorted(api.module),
        "classes": {
            name: {"cpp": api.cpp_types.get(name, ""), "bases": api.bases.get(name, []), "members": sorted(members)}
            for name, members in sorted(api.classes.items())
        },
        "conditional": sorted(api.conditional),
    }


def dump(data: dict[str, object]) -> str:
    """JSON with one line per class (or per top-level list), so that a release's change reads as a short diff."""
    lines = []
    for key, value in data.items():
        if isinstance(value, dict):
            inner = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
            lines.append(f" {json.dumps(key)}: {{\n{inner}\n }}")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--git-dir", type=Path, required=True, help="git directory of an NVIDIA/TensorRT clone")
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="folder for tensorrt-<tag>.json")
    parser.add_argument("tags", nargs="+", help="release tags, e.g. v10.0.0 v10.7.0 v10.16 v11.0 v11.1")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for tag in args.tags:
        data = extract(args.git_dir, tag)
        path = args.out / f"tensorrt-{tag.lstrip('v')}.json"
        path.write_text(dump(data))
        print(f"{path}: {len(data['module'])} module names, {len(data['classes'])} classes, commit {data['commit']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
