"""The layout holds: every module of `bot/` sits in a package of the map (bot/__init__.py), imports run one
way between the packages, only the programs import `handlers`, Redis keys are named in one module, and no
module of bot/, handlers/ or bench/ is over MAX_MODULE_LINES lines nor any function over MAX_FUNCTION_LINES.

Imports are read from the source (every `import`, also inside functions and `if TYPE_CHECKING:`), so a
lazy import cannot slip a dependency past the check.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lowest first: a module may import from its own layer and the layers before it, never from a later one.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("bot.settings", "bot.redis_client", "bot.retry"),
    ("bot.jobs",),
    ("bot.observe",),
    ("bot.providers",),
    ("bot.money",),
    ("bot.parsing",),
    ("bot.views",),
    ("bot.slack",),
    ("bot.lanes",),
    ("bot.requests",),
    ("handlers",),
    ("bot.programs", "bot.__main__"),
)
COMPOSITION_ROOT = ("bot.programs", "bot.__main__")
KEYS_MODULE = ROOT / "bot" / "jobs" / "keys.py"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60  # from its `def` line to its last line, nested functions and methods included


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _layer(name: str) -> int | None:
    for rank, packages in enumerate(LAYERS):
        if any(_within(name, package) for package in packages):
            return rank
    return None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> Iterator[tuple[str, Path]]:
    for top in ("bot", "handlers"):
        for path in sorted((ROOT / top).rglob("*.py")):
            yield _module_name(path), path


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(name: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import of ours in the module `name` at `path`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from bot import providers` imports the package bot.providers, not bot itself.
            targets = [
                f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base for alias in node.names
            ]
        else:
            continue
        for target in targets:
            if target.split(".")[0] in ("bot", "handlers"):
                yield node.lineno, target


def test_every_module_sits_in_a_package_of_the_map() -> None:
    unplaced = [name for name, _ in _modules() if name != "bot" and _layer(name) is None]
    assert unplaced == [], f"modules outside the map in bot/__init__.py and LAYERS: {unplaced}"


def test_imports_run_one_way() -> None:
    upward = []
    for name, path in _modules():
        rank = _layer(name)
        if rank is None:
            continue
        for line, target in _imports(name, path):
            target_rank = _layer(target)
            if target_rank is None or target_rank > rank:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert upward == []


def test_only_the_programs_import_handlers() -> None:
    wired = [
        f"{path.relative_to(ROOT)}:{line}"
        for name, path in _modules()
        if not _within(name, "handlers") and not any(_within(name, root) for root in COMPOSITION_ROOT)
        for line, target in _imports(name, path)
        if _within(target, "handlers")
    ]
    assert wired == []


def test_redis_keys_are_named_only_in_the_keys_module() -> None:
    spelled = [
        f"{path.relative_to(ROOT)}:{number}"
        for _, path in _modules()
        if path != KEYS_MODULE
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "{lip}" in line or "{{lip}}" in line
    ]
    assert spelled == [], "Redis keys belong in bot/jobs/keys.py"


def test_the_map_names_every_package() -> None:
    documented = ast.get_docstring(ast.parse((ROOT / "bot" / "__init__.py").read_text())) or ""
    packages = [package for packages in LAYERS for package in packages if package != "bot.__main__"]
    assert [package for package in packages if package not in documented] == []
    # In the map's order, too.
    assert sorted(packages, key=documented.index) == packages


def _sized_files() -> Iterator[tuple[str, str]]:
    """(path from the repository root, source) of every module whose size is held."""
    for top in ("bot", "handlers", "bench"):
        for path in sorted((ROOT / top).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text()


def test_no_module_is_over_500_lines() -> None:
    long = [
        f"{name}: {len(source.splitlines())} lines"
        for name, source in _sized_files()
        if len(source.splitlines()) > MAX_MODULE_LINES
    ]
    assert long == [], f"split these by their jobs (at most {MAX_MODULE_LINES} lines a module)"


def test_no_function_is_over_60_lines() -> None:
    long = [
        f"{name}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines"
        for name, source in _sized_files()
        for node in ast.walk(ast.parse(source, name))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == [], f"split these into steps (at most {MAX_FUNCTION_LINES} lines a function)"


def test_constructors_take_their_collaborators_by_keyword() -> None:
    """A service's constructor names what it is given (`Transfer(slack_token=…, max_bytes=…)`), so a call
    reads as its wiring and two arguments of one type cannot be swapped; exceptions keep Python's way."""
    positional = []
    for top in ("bot", "handlers"):
        for path in sorted((ROOT / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.ClassDef) or "Exception" in map(ast.unparse, node.bases):
                    continue
                for init in node.body:
                    if (
                        isinstance(init, ast.FunctionDef)
                        and init.name == "__init__"
                        and len(init.args.args) > 2
                    ):
                        positional.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert positional == [], "put `*` after self (or after the one thing the class is about)"
