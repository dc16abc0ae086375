"""The build is reproducible and CI stops on any failing stage.

A clean clone installs the pinned set (constraints.txt) everywhere it installs: CI, the Dockerfile, the
README and CONTRIBUTING. A dependency added to pyproject.toml without a pin, or an install that skips the
pins, would let next month's clone build something that never passed; these checks catch both.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version and ";" not in line, f"constraints.txt: not an exact pin: {line!r}"
        pins[_normalize(name)] = version
    return pins


def _declared() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements.extend(extra)
    return [_normalize(re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0]) for r in requirements]


def test_every_declared_dependency_is_pinned() -> None:
    pins = _pins()
    missing = [name for name in _declared() if name not in pins]
    assert not missing, f"pyproject.toml names dependencies constraints.txt does not pin: {missing}"


def test_installed_versions_are_the_pinned_ones() -> None:
    # The suite runs in what the README's install built; if that skipped `-c constraints.txt`, the tests
    # would pass against versions nobody pinned.
    wrong = {}
    for name, version in _pins().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong[name] = f"pinned {version}, not installed"
            continue
        if installed != version:
            wrong[name] = f"pinned {version}, installed {installed}"
    assert not wrong, wrong


def _commands(script: str) -> list[str]:
    return [
        line.strip()
        for line in script.splitlines()
        if line.strip() and not line.strip().startswith("#") and not line.strip().startswith("set ")
    ]


def test_ci_runs_each_stage_on_its_own_so_any_failure_fails_the_run() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in script
    for command in _commands(script):
        # `a && b` (or `a || b`, `a; b`) under set -e does not stop the run when `a` fails.
        assert not re.search(r"&&|\|\||;", command), f".ci/run: one stage per line: {command!r}"
    commands = _commands(script)
    for stage in (".venv/bin/ruff check .", ".venv/bin/ruff format --check .", ".venv/bin/mypy"):
        assert stage in commands, f".ci/run lacks the stage {stage!r}"


def _readme_block_after(heading_words: str) -> str:
    readme = (ROOT / "README.md").read_text()
    at = readme.index(heading_words)
    block = re.search(r"```sh\n(.*?)```", readme[at:], re.S)
    assert block is not None
    return block.group(1).strip()


def test_ci_runs_the_readmes_test_command_with_the_pins() -> None:
    readme_test = _readme_block_after("**Run the tests**")
    ci = _commands((ROOT / ".ci" / "run").read_text())
    for part in readme_test.split(" && "):
        words = shlex.split(part)
        if words[:1] == [".venv/bin/pip"]:
            assert "-c" in words and words[words.index("-c") + 1] == "constraints.txt", part
            words = [w for w in words if w != "-q"]
        assert any(shlex.split(c.replace(" -q ", " ")) == words for c in ci), (
            f"the README's test command step {part!r} is not what .ci/run runs"
        )


def test_every_install_uses_the_pins() -> None:
    texts = {
        "README.md": (ROOT / "README.md").read_text(),
        "CONTRIBUTING.md": (ROOT / "CONTRIBUTING.md").read_text(),
        "Dockerfile": (ROOT / "Dockerfile").read_text(),
        ".ci/run": (ROOT / ".ci" / "run").read_text(),
    }
    for name, text in texts.items():
        for install in re.findall(r"pip install [^\n&]*", text):
            if "--no-deps" in install:
                continue  # the project itself, after its pinned dependencies
            assert "-c constraints.txt" in install, f"{name}: {install!r} skips the pins"
    assert "COPY pyproject.toml README.md constraints.txt" in texts["Dockerfile"]


def test_readme_commands_run_from_the_venv_without_activating_it() -> None:
    # Pasted into a fresh shell after the install, a bare `lipsync-bot` or `python -m bot` is not found or
    # runs the system Python without the bot's dependencies.
    readme = (ROOT / "README.md").read_text()
    bare = re.findall(r"`(?!\.venv/bin/)(lipsync-bot [a-z]+|python -m bot[^`]*)`", readme)
    assert not bare, f"README commands that fail when pasted without an active venv: {bare}"
