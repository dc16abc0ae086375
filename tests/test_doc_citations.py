"""Every file, module, heading and numbered guarantee that the docs and the code's comments cite exists.

Read: the comments and docstrings of bot/, handlers/, bench/ and tests/, the repository's Markdown files and
.env.example. Checked, each only where its form is unambiguous:
  - repository paths (`bot/jobs/store.py`, `tests/fakes/`, `bot/providers/{base,jogg}.py`,
    `tests/harness.bot_env`) and Markdown file names (`RELIABILITY.md`): the file or folder exists (a `.name`
    after a module: a name it defines);
  - dotted modules (`bot.jobs.model`, `bench.poll_sweep`, `tests.harness.BotProcess`): the module exists, and
    the first name after it is defined there;
  - Markdown links: the file exists, and an `#anchor` is one of its headings';
  - section names quoted after a document (`RELIABILITY.md, "What Redis must be"`, `README ("How it works"`)
    and `X.md §N`: a heading of that document, or the bold title of one of its list items;
  - `guarantee N` and `residual risk N`: an item of RELIABILITY.md's lists, which run in order.
The team's reference notes live beside the repository, not in it (`../shared/docs/`); they are cited as
`shared/docs/<file>.md §N`, and checked only where that folder is present.
"""

from __future__ import annotations

import ast
import io
import itertools
import re
import tokenize
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DOCS = ROOT.parent / "shared" / "docs"
CODE_FOLDERS = ("bot", "handlers", "bench", "tests")
RELIABILITY = ROOT / "RELIABILITY.md"

# A repository path (a top folder, then path characters; braces for alternatives, `*` for a glob) or a
# Markdown file name. Not after a word, a slash or a dot, so URLs and longer paths do not match from inside.
# A path that runs into a placeholder (`tests/test_<name>_client.py`) is a pattern, not a citation.
PATH = re.compile(r"(?<![\w/.~-])((?:bot|handlers|bench|tests)/[\w./{},*-]*+(?!<)|[\w./-]*[\w-]\.md\b)")
# A dotted module path under one of the code folders, e.g. bot.jobs.model or tests.harness.BotProcess.
DOTTED = re.compile(r"(?<![\w/.-])((?:bot|handlers|bench|tests)(?:\.\w+)+)")
DOCS = r"\b(README|RELIABILITY|BENCHMARKS|CONTRIBUTING)(?:\.md)?"
# `RELIABILITY.md, "What Redis must be"`, `README ("How it works"`, `README.md "Settings"`.
QUOTED_SECTION = re.compile(DOCS + r"(?:,\s*|\s*\(\s*|\s+)[\"“]([^\"”]{2,80}?)[\"”]")
NUMBERED_SECTION = re.compile(DOCS + r"\.md\s*§\s*(\d+(?:\.\d+)*)")
NOTES_SECTION = re.compile(r"shared/docs/([\w-]+\.md)((?:\s*(?:,|/|and)?\s*§\s*\d+(?:\.\d+)*)+)")
ITEM_CITATION = re.compile(r"\b(guarantee|residual risk)s?\s+(\d+)\b")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")


# -- what is read -----------------------------------------------------------------------------------------


def _comments_and_docstrings(path: Path) -> str:
    source = path.read_text()
    parts = [
        token.string.lstrip("#")
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            docstring = ast.get_docstring(node, clean=False)
            if docstring:
                parts.append(docstring)
    return "\n".join(parts)


def _markdown_files() -> list[Path]:
    return sorted([*ROOT.glob("*.md"), *(ROOT / "tests").rglob("*.md")])


@cache
def _texts() -> dict[Path, str]:
    """Every text that cites: the code's comments and docstrings, the Markdown files and .env.example."""
    texts = {
        path: _comments_and_docstrings(path)
        for folder in CODE_FOLDERS
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != Path(__file__).resolve()  # this file's own examples are not citations
    }
    for path in [*_markdown_files(), ROOT / ".env.example"]:
        texts[path] = path.read_text()
    return texts


def _cited(pattern: re.Pattern[str]) -> Iterator[tuple[Path, re.Match[str]]]:
    for path, text in _texts().items():
        for match in pattern.finditer(text):
            yield path, match


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


# -- what exists --------------------------------------------------------------------------------------------


def _without_code_blocks(text: str) -> Iterator[str]:
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            yield line


def _headings(path: Path) -> list[str]:
    return [
        match.group(1).strip().rstrip("#").strip()
        for line in _without_code_blocks(path.read_text())
        if (match := re.match(r"#{1,6}\s+(.*)", line))
    ]


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (not `-` or `_`), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


@cache
def _anchors(path: Path) -> set[str]:
    anchors: set[str] = set()
    for heading in _headings(path):
        # A repeated heading gets -1, -2, ... on GitHub.
        tries = (f"{_anchor(heading)}-{n}" if n else _anchor(heading) for n in itertools.count())
        anchors.add(next(anchor for anchor in tries if anchor not in anchors))
    return anchors


def _plain(markdown: str) -> str:
    return " ".join(re.sub(r"[*`_]", "", markdown).split()).rstrip(".:")


@cache
def _sections(path: Path) -> set[str]:
    """What a quoted citation may name: the document's headings and the bold titles of its list items."""
    titles = {_plain(h) for h in _headings(path)}
    for line in _without_code_blocks(path.read_text()):
        if match := re.match(r"\s*(?:\d+\.|[-*])\s+\*\*(.+?)\*\*", line):
            titles.add(_plain(match.group(1)))
    return titles


@cache
def _defined_names(module: Path) -> set[str]:
    """The names a module defines at its top level (functions, classes, assignments, imports)."""
    names: set[str] = set()
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def _module_file(parts: list[str]) -> Path | None:
    base = ROOT.joinpath(*parts)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _module_reference_exists(dotted: str) -> bool:
    """`bot.jobs.model` names a module; `tests.harness.BotProcess` a module and a name defined in it."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = _module_file(parts[:cut])
        if module is not None:
            rest = parts[cut:]
            return not rest or rest[0] in _defined_names(module)
    return False


def _expand_braces(path: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", path)
    if match is None:
        return [path]
    return [
        expanded
        for choice in match.group(1).split(",")
        for expanded in _expand_braces(path[: match.start()] + choice + path[match.end() :])
    ]


def _path_exists(cited: str, near: Path) -> bool:
    for path in _expand_braces(cited):
        if "*" in path:
            if not any(ROOT.glob(path)):
                return False
            continue
        candidates = [ROOT / path, near.parent / path]
        if any(c.exists() for c in candidates):
            continue
        # `tests/harness.bot_env`, `tests/payloads`: a module, and maybe a name defined in it.
        module, _, attribute = path.partition(".")
        file = ROOT / f"{module}.py"
        if not (file.is_file() and (not attribute or attribute in _defined_names(file))):
            return False
    return True


def _is_team_notes(cited: str) -> bool:
    return cited.startswith(("shared/docs/", "../shared/docs/"))


# -- the checks ---------------------------------------------------------------------------------------------


def test_cited_files_and_folders_exist() -> None:
    missing = []
    for path, match in _cited(PATH):
        cited = match.group(1).rstrip(".,;:")
        if not cited or _is_team_notes(cited):
            continue
        if not _path_exists(cited, near=path):
            missing.append(f"{_name(path)}: {cited}")
    assert not missing, "cited paths that do not exist:\n" + "\n".join(sorted(set(missing)))


def test_cited_modules_exist() -> None:
    missing = [
        f"{_name(path)}: {match.group(1)}"
        for path, match in _cited(DOTTED)
        if not _module_reference_exists(match.group(1))
    ]
    assert not missing, "cited modules or names that do not exist:\n" + "\n".join(sorted(set(missing)))


def test_markdown_links_lead_somewhere() -> None:
    broken = []
    for document in _markdown_files():
        for match in LINK.finditer(document.read_text()):
            target = match.group(1)
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            linked = (document.parent / file) if file else document
            if not linked.exists():
                broken.append(f"{_name(document)}: ({target}): no such file")
            elif anchor and (linked.suffix != ".md" or anchor not in _anchors(linked)):
                broken.append(f"{_name(document)}: ({target}): no such heading")
    assert not broken, "Markdown links that lead nowhere:\n" + "\n".join(broken)


def test_cited_sections_exist() -> None:
    missing = []
    for path, match in _cited(QUOTED_SECTION):
        document, section = ROOT / f"{match.group(1)}.md", _plain(match.group(2))
        if section not in _sections(document):
            missing.append(f'{_name(path)}: {match.group(1)}, "{match.group(2)}"')
    for path, match in _cited(NUMBERED_SECTION):
        document, number = ROOT / f"{match.group(1)}.md", match.group(2)
        if not any(re.match(rf"{re.escape(number)}\.?\s", h) for h in _headings(document)):
            missing.append(f"{_name(path)}: {match.group(1)}.md §{number}")
    assert not missing, "cited sections that do not exist:\n" + "\n".join(sorted(set(missing)))


def _numbered_items(section: str) -> list[int]:
    """The numbers of the top-level list items under RELIABILITY.md's `## <section>`, in order."""
    text = RELIABILITY.read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return [int(n) for n in re.findall(r"^(\d+)\.\s+\*\*", body, re.M)]


ITEM_SECTIONS = {"guarantee": "Guarantees", "residual risk": "Residual risks (honest)"}


@pytest.mark.parametrize("kind", list(ITEM_SECTIONS))
def test_reliability_items_are_numbered_in_order(kind: str) -> None:
    # "guarantee 21" means the 21st item only if the list counts without gaps or repeats (a Markdown
    # renderer numbers the items itself, from the first number).
    numbers = _numbered_items(ITEM_SECTIONS[kind])
    assert numbers and numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers


def test_cited_guarantees_and_risks_exist() -> None:
    missing = [
        f"{_name(path)}: {match.group(0)}"
        for path, match in _cited(ITEM_CITATION)
        if int(match.group(2)) not in _numbered_items(ITEM_SECTIONS[match.group(1)])
    ]
    assert not missing, "cited guarantees or risks that RELIABILITY.md does not have:\n" + "\n".join(missing)


@pytest.mark.skipif(not SHARED_DOCS.is_dir(), reason="the team's notes are not beside this checkout")
def test_cited_sections_of_the_team_notes_exist() -> None:
    missing = []
    for path, match in _cited(NOTES_SECTION):
        notes = SHARED_DOCS / match.group(1)
        if not notes.is_file():
            missing.append(f"{_name(path)}: shared/docs/{match.group(1)}")
            continue
        numbers = {m.group(1) for h in _headings(notes) if (m := re.match(r"(\d+(?:\.\d+)*)\.?\s", h))}
        for number in re.findall(r"§\s*(\d+(?:\.\d+)*)", match.group(2)):
            if number not in numbers:
                missing.append(f"{_name(path)}: shared/docs/{match.group(1)} §{number}")
    assert not missing, "cited sections of the team's notes that do not exist:\n" + "\n".join(missing)
