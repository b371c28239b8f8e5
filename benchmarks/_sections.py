"""Each benchmark owns one marked section of docs/benchmarks.md and rewrites only that."""

from __future__ import annotations

import platform
from pathlib import Path

HEADER = (
    "# Benchmarks\n\n"
    "Each section is written by the script it names, on the machine it names; rerun the script "
    "to refresh it. Times are medians after a warm-up (the audit benchmark: best of its rounds, "
    "as it says); ratios compare tools in the same run.\n"
)


def write_section(path: Path, name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of the Markdown file at ``path``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else HEADER
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (or what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
