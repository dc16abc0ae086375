"""One bench, this tree against another commit, back to back: the "before and after" of a change.

The whole of REV (its bot, bench and tests) is exported with `git archive` into a temporary directory (no
git state changes), and the named bench module runs `--runs` times in each tree, alternating, as a child
process started in that tree (its own `bot` comes first on PYTHONPATH), so a noisy moment of the shared
machine falls on both. Each run's output is printed whole, labelled with its tree; every `--figure
NAME=REGEX` (the regex's first group a number) is then read from each run and reported per tree as
min / median / max over the runs, with this tree's median over the baseline's.

    .venv/bin/python -m bench.against ae51ab6 bench.ack_latency --runs 3 \\
        --figure 'single p50 ms=bot\\s+single\\s+\\S+\\s+([\\d.]+)' -- --quick --modes single

Arguments after `--` go to the bench. The bench must exist with the same arguments in both trees.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from tests.harness import REPO

THIS_TREE = "this tree"


def export_tree(rev: str, into: Path, *paths: str) -> Path:
    """Commit `rev` (only `paths` when given, else all of it), unpacked under `into`."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", rev, *paths], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def run_in(tree: Path, module: str, bench_args: list[str]) -> str:
    """The bench's output, run from `tree` with that tree's packages first on the import path."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-m", module, *bench_args], cwd=tree, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"{module} failed in {tree} (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def figures(output: str, wanted: dict[str, re.Pattern[str]]) -> dict[str, float]:
    found: dict[str, float] = {}
    for name, pattern in wanted.items():
        match = pattern.search(output)
        if match is None:
            sys.exit(f"figure {name!r} not found by {pattern.pattern!r} in:\n{output}")
        found[name] = float(match.group(1).replace(",", ""))
    return found


def report(rev: str, by_tree: dict[str, list[dict[str, float]]], wanted: dict[str, re.Pattern[str]]) -> None:
    baseline = f"baseline {rev}"
    print(f"\n{'figure':<32} {'tree':<18} {'min':>10} {'median':>10} {'max':>10}")
    for name in wanted:
        for tree, runs in by_tree.items():
            values = sorted(run[name] for run in runs)
            median = statistics.median(values)
            print(f"{name:<32} {tree:<18} {values[0]:>10.2f} {median:>10.2f} {values[-1]:>10.2f}")
        ours = statistics.median(run[name] for run in by_tree[THIS_TREE])
        theirs = statistics.median(run[name] for run in by_tree[baseline])
        print(
            f"{name:<32} {'this / baseline':<18} {'':>10} {ours / theirs if theirs else float('nan'):>9.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the commit to compare with (e.g. the one before the change)")
    parser.add_argument("module", help="the bench module, e.g. bench.ack_latency")
    parser.add_argument("--runs", type=int, default=3, help="runs of each tree, alternating (default 3)")
    parser.add_argument(
        "--figure", action="append", default=[], metavar="NAME=REGEX", help="a number to read"
    )
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args, bench_args = parser.parse_args(argv[:cut]), argv[cut + 1 :]
    wanted = {name: re.compile(regex) for name, _, regex in (f.partition("=") for f in args.figure)}
    baseline = f"baseline {args.rev}"
    by_tree: dict[str, list[dict[str, float]]] = {baseline: [], THIS_TREE: []}
    with tempfile.TemporaryDirectory(prefix="bench-against-") as exported:
        trees = {baseline: export_tree(args.rev, Path(exported)), THIS_TREE: REPO}
        for run in range(1, args.runs + 1):
            for label, tree in trees.items():
                output = run_in(tree, args.module, bench_args)
                print(f"===== run {run}, {label} =====\n{output}", flush=True)
                by_tree[label].append(figures(output, wanted))
    if wanted:
        report(args.rev, by_tree, wanted)


if __name__ == "__main__":
    main()
