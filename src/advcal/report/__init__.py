"""Human-readable reports of an audit: one self-contained HTML page from a report.json dict.

Design rule: this package renders results and computes nothing. The HTML page reads the JSON
layout and nothing else (it imports only ``advcal._core`` and ``advcal.results``), so any
archived report.json can be rendered without the models, the data or torch;
:mod:`advcal.report.console` draws the terminal tables.

Layer (docs/architecture.md; lint-imports holds it): imports only from the layers below it; in
practice only _core and results (never an analysis at run time).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from advcal._core.atomic import write_bytes_atomic
from advcal._core.errors import InputError
from advcal._core.validation import check_output
from advcal.report.html import ModelFigure, check_report, render, render_html

__all__ = ["load_report", "render_html", "write_report"]


def load_report(path: str | os.PathLike) -> dict:
    """Read a report.json written by an audit.

    Raises :class:`~advcal.errors.InputError` naming ``report`` for a missing or unreadable file,
    invalid JSON, or JSON that is not an advcal report.
    """
    source = Path(path)
    given = repr(str(source))
    try:
        with source.open(encoding="utf-8") as handle:
            report = json.load(handle)
    except FileNotFoundError:
        raise InputError(f"report: expected an existing report.json file, got {given} (not found)") from None
    except OSError as error:
        raise InputError(f"report: expected a readable report.json file, got {given} ({error})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"report: expected a JSON file, got invalid JSON in {given} ({error})") from None
    check_report(report, source=given)
    return report


def write_report(
    report: dict, html_path: str | os.PathLike, figures_dir: str | os.PathLike | None = None
) -> Path:
    """Write the HTML page of ``report`` to ``html_path``; return that path.

    With ``figures_dir``, also write every figure there as ``<model>-<figure>.png``. Every file
    is written atomically, so a reader never sees a half-written page or image.
    """
    check_output(html_path, "html", "file")
    if figures_dir is not None:
        check_output(figures_dir, "figures", "folder")
    rendered = render(report)
    target = write_bytes_atomic(html_path, rendered.html.encode("utf-8"))
    if figures_dir is not None:
        for name, png in _figure_files(rendered.figures).items():
            write_bytes_atomic(Path(figures_dir) / name, png)
    return target


def _figure_files(figures: list[tuple[str, list[ModelFigure]]]) -> dict[str, bytes]:
    """File name -> PNG bytes; distinct models whose names sanitise alike get a numeric suffix."""
    files: dict[str, bytes] = {}
    used: set[str] = set()
    for model, drawn in figures:
        stem = _safe_name(model)
        candidate, number = stem, 1
        while candidate in used:
            number += 1
            candidate = f"{stem}-{number}"
        used.add(candidate)
        files.update({f"{candidate}-{figure.name}.png": figure.png for figure in drawn})
    return files


def _safe_name(name: str) -> str:
    # Keep file names portable: no path separators, no leading dots, nothing a shell would expand.
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "model"
