"""The whole commands a user waits for, against the floors they cannot beat, in one run.

    python benchmarks/bench_cli.py [--repeats 5] [--out docs/benchmarks.md]

Each row is a fresh process, timed from start to exit, as a user at a shell waits for it:
``advcal --help``, ``--version``, a one-line bad-input error, the default ``advcal audit`` and
re-rendering its report with ``advcal report``. The floors are ``python -c "import typer"``
(what a command line costs at all) and ``python -c "import torch"``. The default audit is also
split into its compute (the seconds report.json records for clean passes, the attack and the
metrics) and the rest, so its overhead is its wall time minus compute minus the torch import.
Rounds run every command once in a shuffled order (seeded), ``--repeats`` rounds after one
warm-up round; the table shows the median and the range. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import advcal
from _sections import cpu_name, write_section

ROOT = Path(__file__).resolve().parents[1]


def commands(folder: Path) -> dict[str, list[str]]:
    """Name -> argv of every timed process (the audit writes into ``folder``)."""
    python = [sys.executable]
    cli = [*python, "-m", "advcal"]
    return {
        'python -c "import typer"': [*python, "-c", "import typer"],
        'python -c "import torch"': [*python, "-c", "import torch"],
        "advcal --help": [*cli, "--help"],
        "advcal --version": [*cli, "--version"],
        "advcal audit --bins 0 (a one-line error)": [*cli, "audit", "--bins", "0"],
        "advcal audit (the default)": [*cli, "audit", "--out", str(folder / "audit")],
        "advcal report report.json --html (re-render)": [
            *cli, "report", str(folder / "audit" / "report.json"), "--html", str(folder / "again.html")],
    }


def run_once(argv: list[str]) -> float:
    """Wall seconds of one process from start to exit (its output discarded)."""
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    expected = 2 if "--bins" in argv else 0
    if done.returncode != expected:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds


def audit_compute(folder: Path) -> float:
    """The seconds the last default audit spent computing (clean, attack, metrics; all models)."""
    report = json.loads((folder / "audit" / "report.json").read_text())
    return sum(sum(float(v) for v in model["cost"]["seconds"].values()) for model in report["models"])


def measure(repeats: int, seed: int) -> tuple[dict[str, list[float]], list[float]]:
    """Per command (in the table's order) its wall times over the rounds, and the default
    audit's compute per round."""
    compute: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        table = commands(folder)
        order = list(table)
        times: dict[str, list[float]] = {name: [] for name in order}
        # The warm-up round fills the OS page cache and writes the report the re-rendering reads.
        for name in order:
            run_once(table[name])
        shuffle = random.Random(seed)
        for _ in range(repeats):
            # The re-rendering may come before this round's audit: it then reads the previous
            # round's report.json, the same file.
            shuffle.shuffle(order)
            for name in order:
                times[name].append(run_once(table[name]))
                if name == "advcal audit (the default)":
                    compute.append(audit_compute(folder))
    return times, compute


def render(times: dict[str, list[float]], compute: list[float], repeats: int) -> str:
    median = {name: statistics.median(values) for name, values in times.items()}
    typer, torch_import = median['python -c "import typer"'], median['python -c "import torch"']
    lines = [
        "## Whole commands",
        "",
        f"Made by `python benchmarks/bench_cli.py` ({repeats} shuffled rounds after a warm-up round; "
        "each row a fresh process, start to exit).",
        "",
        f"- Machine: {cpu_name()}, {os.cpu_count()} logical CPUs, Linux {platform.release()}",
        f"- Versions: advcal {advcal.__version__}, Python {platform.python_version()}",
        "",
        "| command | median s | min–max s | × `import typer` |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, values in times.items():
        lines.append(f"| `{name}` | {median[name]:.2f} | {min(values):.2f}–{max(values):.2f} | "
                     f"{median[name] / typer:.1f} |")
    audit = median["advcal audit (the default)"]
    work = statistics.median(compute)
    overhead = audit - work - torch_import
    lines += [
        "",
        f"The default audit: {audit:.2f} s of wall time for {work:.2f} s of compute (clean passes, "
        f"attack, metrics, as report.json records them); less the `import torch` floor "
        f"({torch_import:.2f} s) that leaves {overhead:.2f} s for starting, loading, the other imports "
        "and writing the report (goal: at most 1.5 s).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    times, compute = measure(args.repeats, args.seed)
    body = render(times, compute, args.repeats)
    print(body)
    write_section(args.out, "bench_cli", body)


if __name__ == "__main__":
    main()
