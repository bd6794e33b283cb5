"""The documentation cannot rot: every relative link in README.md, docs/ and benchmarks/README.md resolves (file
and heading), and every ``--flag`` shown for a command exists in that command's ``--help``.

A flag is shown for a command when it follows the command in a code line or code span, or when it stands alone
in a code span of the command's own page (``docs/export.md``: ``rtdetr-export``); a lone flag elsewhere in
README.md or docs/ must belong to some command. benchmarks/README.md's lone flags are its scripts' (not checked).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", ROOT / "benchmarks" / "README.md", *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# A command as the pages write it: rtdetr-X (also .venv/bin/rtdetr-X), or python/torchrun ... -m rtdetr_deploy[.cli].X;
# only the names pyproject.toml installs as scripts count (``rtdetr-deploy[extra]`` is the package, not a command).
COMMAND = re.compile(r"(?:^|[\s/'\"])rtdetr-([a-z]+)\b(?![\[.])|-m rtdetr_deploy\.(?:cli\.)?([a-z]+)\b(?!\.)")
SCRIPT = re.compile(r'^rtdetr-([a-z]+)\s*=\s*"([\w.]+):main"', re.M)
# Pages that document one command: a bare `--flag` in their text belongs to it.
PAGE_COMMAND = {"export.md": "export", "infer.md": "infer", "eval.md": "eval", "bench.md": "bench", "train.md": "train"}
PAGE_COMMAND |= {"demo.md": "demo", "serve.md": "serve"}


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.+)$", text, re.M)}


def _links() -> list[tuple[Path, str]]:
    found = []
    for page in PAGES:
        text = FENCE.sub("", page.read_text(encoding="utf-8"))
        found += [(page, m.group(1)) for m in LINK.finditer(CODE_SPAN.sub("", text))]
    return found


def _relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target)


@pytest.mark.parametrize(
    ("page", "target"),
    [(p, t) for p, t in _links() if _relative(t)],
    ids=lambda v: v.relative_to(ROOT).as_posix() if isinstance(v, Path) else v,
)
def test_relative_link_resolves(page: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    resolved = (page.parent / path).resolve() if path else page
    assert resolved.exists(), f"{page.relative_to(ROOT)}: link to {target} points at a missing {resolved}"
    if anchor:
        assert resolved.suffix == ".md", f"{page.relative_to(ROOT)}: anchor on a non-page {target}"
        assert anchor in _anchors(resolved), f"{page.relative_to(ROOT)}: no heading #{anchor} in {path or page.name}"


def test_pages_exist_and_the_link_check_sees_links() -> None:
    assert (ROOT / "docs" / "index.md").is_file()
    assert len([1 for _, t in _links() if _relative(t)]) > 20


@cache
def _scripts() -> dict[str, str]:
    """Command name (``export`` for ``rtdetr-export``) -> the module whose ``main`` pyproject.toml installs."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    return dict(SCRIPT.findall(text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]))


@cache
def _help(command: str) -> str:
    """The ``--help`` text of ``rtdetr-<command>``."""
    module = importlib.import_module(_scripts()[command])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = module.main(["--help"])
    assert code == 0, f"rtdetr-{command} --help exited with {code}"
    return out.getvalue()


def _command_flags(line: str) -> list[tuple[str, str]]:
    """``(command, flag)`` for every flag written after a command in one shell line (pipes and ``&&`` split it)."""
    pairs = []
    for segment in re.split(r"&&|\|\||\||;", line.split(" # ")[0]):
        match = next((m for m in COMMAND.finditer(segment) if (m.group(1) or m.group(2)) in _scripts()), None)
        if match:
            command = match.group(1) or match.group(2)
            pairs += [(command, flag) for flag in FLAG.findall(segment[match.end() :])]
    return pairs


def _shown_flags() -> list[tuple[str, str, str]]:
    """``(page, command, flag)``: flags in code lines after a command; bare ``--flag`` spans in a command's page
    belong to that command, elsewhere to any command (``*``)."""
    shown = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        name = page.relative_to(ROOT).as_posix()
        for block in FENCE.findall(text):
            for line in block.splitlines()[1:-1]:
                shown += [(name, c, f) for c, f in _command_flags(line.removeprefix("$ "))]
        for span in CODE_SPAN.findall(FENCE.sub("", text)):
            pairs = _command_flags(span)
            if pairs:
                shown += [(name, c, f) for c, f in pairs]
            elif span.startswith("--") and page.parent.name != "benchmarks":
                owner = PAGE_COMMAND.get(page.name) if page.parent.name == "docs" else None
                shown += [(name, owner or "*", f) for f in FLAG.findall(span)[:1]]
    return shown


@pytest.mark.parametrize(("page", "command", "flag"), sorted(set(_shown_flags())))
def test_flag_shown_exists_in_the_commands_help(page: str, command: str, flag: str) -> None:
    if command == "*":
        helps = {c: _help(c) for c in sorted(_scripts())}
        assert any(re.search(rf"{flag}\b(?!-)", text) for text in helps.values()), f"{page}: {flag} is no command's"
    else:
        assert re.search(rf"{flag}\b(?!-)", _help(command)), f"{page}: rtdetr-{command} has no {flag}"


def test_flag_check_can_fail() -> None:
    assert {"export", "infer", "eval", "bench", "train", "demo"} <= set(_scripts())
    assert _command_flags("rtdetr-export w.pth --no-such-flag && pytest --x") == [("export", "--no-such-flag")]
    assert _command_flags("pip install 'rtdetr-deploy[serve]' --upgrade") == []
    assert _command_flags("python -m rtdetr_deploy.data.tracking OUT --sequences 3") == []
    assert _command_flags("python -m rtdetr_deploy.cli.eval m.onnx --data d") == [("eval", "--data")]
    assert not re.search(r"--no-such-flag\b(?!-)", _help("export"))
    assert _command_flags("python -m rtdetr_deploy.infer a.jpg --model m.onnx") == [("infer", "--model")]
