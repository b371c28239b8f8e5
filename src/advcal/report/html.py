"""The HTML report: one self-contained page (inline CSS, figures as data: URIs) from a report dict.

Only the report.json layout is read here, never advcal's live objects, so a report can be
re-rendered from an archived JSON file by any later version of advcal. Keys that newer audits
add (``histogram``, ``selective``, ``paired``, ``abstention``, ``cost``, ``device``) are shown
when present and silently skipped when not.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata

import jinja2

from advcal._core.errors import InputError, describe
from advcal.report import figures
from advcal.results.flags import SEVERITIES, FlagCode, explanation, severity_rank
from advcal.results.verdict import model_verdict

WORST_FIRST = tuple(reversed(SEVERITIES))

SUMMARY_METRICS = (("accuracy", "Accuracy"), ("ece", "ECE"), ("brier", "Brier"), ("nll", "NLL"))
ABSTENTION_KEYS = ("target_coverage", "threshold", "clean_coverage", "clean_risk", "adv_coverage", "adv_risk")
# The metrics against ε figure: (report key, panel title).
TREND_METRICS = (("ece", "ECE"), ("brier", "Brier score"), ("accuracy", "Accuracy"))


@dataclass(frozen=True)
class ModelFigure:
    """One PNG figure of one model, with the words the page shows around it."""

    name: str
    title: str
    caption: str
    png: bytes

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass
class Rendered:
    """The page and, per model, its name and the figures embedded in it (for ``write_report``)."""

    html: str
    figures: list[tuple[str, list[ModelFigure]]] = field(default_factory=list)


def check_report(report: object, source: str = "") -> None:
    """Raise :class:`InputError` unless ``report`` has the top-level layout of a report.json."""
    where = f" in {source}" if source else ""
    expected = "expected a dict with 'schema_version' and 'models' (the layout of an advcal report.json)"
    if not isinstance(report, dict):
        raise InputError(f"report: {expected}, got {describe(report)}{where}")
    missing = [key for key in ("schema_version", "models") if key not in report]
    if missing:
        raise InputError(f"report: {expected}, got a dict without {' and '.join(map(repr, missing))}{where}")
    models = report["models"]
    if not isinstance(models, list) or not all(
        isinstance(m, dict) and {"name", "clean", "attacks"} <= m.keys() for m in models
    ):
        raise InputError(
            f"report: expected 'models' to be a list of dicts with 'name', 'clean' and 'attacks', "
            f"got {describe(models)}{where}"
        )


def render_html(report: dict) -> str:
    """The self-contained HTML page of an audit's report dict (as loaded from report.json)."""
    return render(report).html


def render(report: dict) -> Rendered:
    """The HTML page and the figures in it, drawn once for both."""
    check_report(report)
    config = report.get("config") or {}
    drawn = [(str(model["name"]), model_figures(model)) for model in report["models"]]
    sections = [
        _model_view(i, model, figs)
        for i, (model, (_, figs)) in enumerate(zip(report["models"], drawn, strict=True))
    ]
    html = _environment().get_template("report.html.j2").render(
        verdicts=[_verdict_view(model) for model in report["models"]],
        comparison=(report.get("comparison") or {}).get("sentence"),
        audited=_audited(report),
        summary=_summary_rows(report["models"]),
        models=sections,
        figures_total=sum(len(s["figures"]) for s in sections),
        schema_version=report["schema_version"],
        audit_version=config.get("advcal_version"),
        renderer_version=_renderer_version(),
        config_json=json.dumps(config, indent=2, ensure_ascii=False),
    )
    return Rendered(html, drawn)


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    # Autoescape on: model names, class names and messages come from the user's files.
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("advcal.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["signed"] = _signed
    return env


def _renderer_version() -> str:
    # Read from the installed metadata: the report package imports nothing of advcal's core.
    try:
        return metadata.version("advcal")
    except metadata.PackageNotFoundError:
        return "unknown"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _num(value: object, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if _is_number(value) else "—"


def _signed(value: object, digits: int = 3) -> str:
    return f"{value:+.{digits}f}" if _is_number(value) else "—"


def _interval(bounds: object) -> list[float] | None:
    """A ``[low, high]`` interval, or ``None`` when it is missing or either end is null."""
    if isinstance(bounds, list | tuple) and len(bounds) == 2 and all(map(_is_number, bounds)):
        return list(bounds)
    return None


def _metric(entry: Mapping, key: str) -> object:
    return (entry.get("metrics") or {}).get(key)


def _bounds(entry: Mapping, key: str) -> list[float] | None:
    return _interval((entry.get("intervals") or {}).get(key))


def _eps_label(eps: object) -> str:
    return f"ε={eps:g}" if _is_number(eps) else "ε=?"


def _conditions(model: Mapping) -> list[tuple[str, Mapping]]:
    """(label, entry) of the clean run and of each attacked run, in report order."""
    return [("clean", model["clean"]), *((_eps_label(a.get("eps")), a) for a in model["attacks"])]


def _inflection(flags: Sequence[Mapping]) -> float | None:
    inflections = (f for f in flags if f.get("code") == FlagCode.ECE_INFLECTION and _is_number(f.get("eps")))
    return next((f["eps"] for f in inflections), None)


# --- figures -------------------------------------------------------------------------------------------


def model_figures(model: Mapping) -> list[ModelFigure]:
    """Every figure of one model's section, in page order; parts absent from the report are skipped."""
    conditions = _conditions(model)
    labels = [label for label, _ in conditions]
    entries = [entry for _, entry in conditions]
    drawn = [
        ModelFigure(
            "reliability", "Reliability diagrams",
            "Bars: accuracy of the predictions in each confidence bin; dashed line: perfect calibration; "
            "hatched: the gap to the bin's mean confidence. Numbers above the bars are sample counts.",
            figures.reliability_diagrams(labels, [e["reliability"] for e in entries],
                                         [_metric(e, "ece") for e in entries]),
        ),
        ModelFigure(
            "histogram", "Confidence histograms",
            "Fraction of inputs per confidence bin (log scale). Mass moving right under attack while "
            "accuracy falls is overconfidence.",
            figures.confidence_histograms(labels, [_histogram(e) for e in entries]),
        ),
        ModelFigure(
            "metrics", "Calibration and accuracy against ε",
            "Clean at ε = 0; error bars are bootstrap 95% intervals. The dashed line marks the ε where ECE "
            "jumps most, when the audit found one.",
            _trend_figure(model, entries),
        ),
    ]
    if all(e.get("per_class") for e in entries):
        drawn.append(ModelFigure(
            "per_class", "Per-class ECE",
            "Calibration error of each true class (rows, with sample counts) clean and at each ε; one "
            "colour scale for the whole grid. Grey: not computable.",
            _per_class_figure(labels, entries),
        ))
    if all(e.get("selective") for e in entries):
        selective = [e["selective"] for e in entries]
        drawn.append(ModelFigure(
            "risk_coverage", "Risk–coverage curves",
            "Error rate among the most confident inputs as more of them are kept. Lower is better; AURC is "
            "the area under each curve.",
            figures.risk_coverage(labels, [s["coverage"] for s in selective], [s["risk"] for s in selective],
                                  [s.get("aurc") for s in selective]),
        ))
    return drawn


def _histogram(entry: Mapping) -> Mapping:
    """The confidence histogram of an entry; older reports only have the reliability bin counts."""
    if entry.get("histogram"):
        return entry["histogram"]
    curve = entry["reliability"]
    total = sum(curve["count"])
    return {"lower": curve["lower"], "upper": curve["upper"],
            "fraction": [n / total if total else 0.0 for n in curve["count"]]}


def _trend_figure(model: Mapping, entries: Sequence[Mapping]) -> bytes:
    eps = [0.0, *(a.get("eps") for a in model["attacks"])]
    values = {title: [_metric(e, key) for e in entries] for key, title in TREND_METRICS}
    intervals = {title: [_bounds(e, key) for e in entries] for key, title in TREND_METRICS}
    return figures.metrics_vs_eps(eps, values, intervals, _inflection(model.get("flags", [])))


def _per_class_figure(labels: Sequence[str], entries: Sequence[Mapping]) -> bytes:
    table = entries[0]["per_class"]
    rows = [[e["per_class"]["ece"][i] for e in entries] for i in range(len(table["class"]))]
    return figures.per_class_heatmap(table["class"], table["count"], labels, rows)


# --- tables --------------------------------------------------------------------------------------------


def _verdict_view(model: Mapping) -> dict[str, str]:
    """A model's verdict line; reports older than schema 0.5 get it from their flags."""
    verdict = model.get("verdict") or model_verdict(
        model.get("flags") or [], [a["eps"] for a in model["attacks"] if _is_number(a.get("eps"))]).to_dict()
    return {"name": str(model["name"]), "level": str(verdict["level"]), "reason": str(verdict["reason"])}


def _audited(report: Mapping) -> list[tuple[str, str]]:
    """(label, value) lines saying what was audited, for the page header."""
    config = report.get("config") or {}
    data = config.get("data") or {}
    attack = dict(config.get("attack") or {})
    epsilons = config.get("epsilons") or attack.get("eps") or []
    name = attack.pop("attack", None) or "—"
    attack.pop("eps", None)
    settings = ", ".join(f"{k}={v}" for k, v in attack.items() if v is not None)
    lines = [
        ("Models", ", ".join(str(m["name"]) for m in report["models"]) or "—"),
        ("Data", f"{data.get('spec', '—')} (split {data.get('split', '—')}, "
                 f"n = {data.get('n_samples', '—')})"),
        ("Attack", f"{name}" + (f" — {settings}" if settings else "")),
        ("ε sweep", ", ".join(f"{e:g}" if _is_number(e) else str(e) for e in epsilons) or "—"),
        ("Binning and bootstrap", f"{config.get('n_bins', '—')} equal-width bins, "
                                  f"{config.get('bootstrap', '—')} bootstrap resamples"),
        ("Seed and profile", f"seed {config.get('seed', '—')}, flag profile {config.get('profile', '—')}"),
    ]
    if config.get("device"):
        lines.append(("Device", str(config["device"])))
    return lines


def _summary_rows(models: Sequence[Mapping]) -> list[dict]:
    """One row per model and condition: headline metrics, ECE interval and deltas to clean."""
    rows = []
    for model in models:
        for position, (label, entry) in enumerate(_conditions(model)):
            delta = entry.get("delta") or {}
            paired = entry.get("paired") or {}
            rows.append({
                "model": model["name"],
                "condition": label,
                "values": [_metric(entry, key) for key, _ in SUMMARY_METRICS],
                "ece_ci": _bounds(entry, "ece"),
                "deltas": [
                    {"value": delta.get(key), "test": _paired_test(paired.get(key))}
                    for key, _ in SUMMARY_METRICS
                ] if position else None,
            })
    return rows


def _paired_test(test: Mapping | None) -> dict | None:
    """A paired bootstrap test as the page shows it (``None`` when the report has none)."""
    if not test:
        return None
    ci = test.get("ci") or [None, None]
    return {
        "significant": bool(test.get("significant")),
        "p_value": test.get("p_value"),
        "tooltip": f"paired bootstrap: Δ {_signed(test.get('delta'))}, "
                   f"95% CI [{_num(ci[0])}, {_num(ci[1])}], p = {_num(test.get('p_value'))}",
    }


def _model_view(index: int, model: Mapping, drawn: Sequence[ModelFigure]) -> dict:
    """Everything the template shows in one model's section."""
    name = str(model["name"])
    # One row per code and severity with every ε it fires at; worst first (sorted() is stable,
    # so groups of one severity keep the audit's order).
    views = _grouped([_flag_view(f) for f in model.get("flags") or []])
    flags = sorted(views, key=lambda f: -severity_rank(f["severity"]))
    codes = list(dict.fromkeys(f["code"] for f in flags))
    conditions = _conditions(model)
    return {
        "name": name,
        "anchor": f"model-{index + 1}",
        "counts": {s: sum(f["count"] for f in flags if f["severity"] == s) for s in WORST_FIRST},
        "flags": flags,
        "glossary": [(code, explanation(code)) for code in codes],
        "figures": [
            {"title": f.title, "caption": f.caption, "alt": f"{f.title} for model {name}", "src": f.data_uri}
            for f in drawn
        ],
        "conditions": [label for label, _ in conditions],
        "metric_rows": _metric_rows(conditions),
        "selective": _selective_rows(conditions),
        "abstention": [_abstention_row(a) for a in model["attacks"] if a.get("abstention")],
        "cost": model.get("cost") or None,
        "illusion": _illusion_view(model.get("illusion")),
        "fixes": _fixes_view(model.get("fixes")),
        "examples": [ex | {"clean_confidence": _num(ex["clean_confidence"]), "budget": f"{ex['budget']:g}",
                           "adversarial_confidence": _num(ex["adversarial_confidence"])}
                     for ex in model.get("examples") or []],
    }


def _fixes_view(table: Mapping | None) -> dict | None:
    """The fixes table: ECE clean and under the adaptive attacker per ε, per fix."""
    if not table:
        return None
    conditions = [key for key in table["baseline"] if key != "clean"]

    def cells(figures: Mapping) -> list[str]:
        return [_num(figures["clean"]["ece"]), *(_num(figures[c]["ece"]) for c in conditions)]

    rows = [{"fix": "none (uncalibrated)", "cells": cells(table["baseline"]), "holds": "", "helps": ""}]
    for fix in table["fixes"]:
        adaptive = dict(fix["metrics"]["adaptive"]) | {"clean": fix["metrics"]["frozen"]["clean"]}
        rows.append({"fix": f"{fix['calibrator']}/{fix['fit_on']}", "cells": cells(adaptive),
                     "holds": "yes" if fix["holds"] else "no", "helps": "yes" if fix["helps"] else "no"})
    return {"conditions": conditions, "rows": rows}


def _illusion_view(found: Mapping | None) -> dict | None:
    """The illusion check's verdict, reasons and one row per attack check."""
    if not found:
        return None
    rows = []
    for name, check in (found.get("checks") or {}).items():
        if "adv_accuracy" not in check:
            continue
        detail = f"T = {check['temperature']:.3g}" if "temperature" in check else str(check.get("attack", ""))
        rows.append({"check": name, "accuracy": _num(check["adv_accuracy"]), "detail": detail,
                     "best": name == found.get("best_check")})
    return {"verdict": found.get("verdict"), "reasons": list(found.get("reasons") or []), "rows": rows,
            "eps": (found.get("settings") or {}).get("eps"), "runs": found.get("attack_runs")}


def _abstention_row(attack: Mapping) -> dict:
    numbers = attack["abstention"]
    return {"condition": _eps_label(attack.get("eps"))} | {key: numbers.get(key) for key in ABSTENTION_KEYS}


def _flag_view(flag: Mapping) -> dict:
    code = str(flag.get("code"))
    evidence = flag.get("evidence") or {}
    return {
        # An unknown severity from a newer audit is shown, calmly, as information.
        "severity": flag.get("severity") if flag.get("severity") in SEVERITIES else "info",
        "code": code,
        # Flags without an ε are about the clean inputs (or the model as a whole).
        "eps": _eps_label(flag["eps"]) if _is_number(flag.get("eps")) else "clean",
        "message": str(flag.get("message", "")),
        "explanation": explanation(code),
        "evidence": "; ".join(f"{k} {_evidence_value(v)}" for k, v in evidence.items()),
    }


def _grouped(views: Sequence[dict]) -> list[dict]:
    """Flag views merged per (code, severity): the first one's finding, every ε, a count."""
    groups: dict[tuple[str, str], dict] = {}
    for view in views:
        key = (view["code"], view["severity"])
        if key not in groups:
            groups[key] = view | {"where": [view["eps"]], "count": 1}
            continue
        group = groups[key]
        group["count"] += 1
        if view["eps"] not in group["where"]:
            group["where"].append(view["eps"])
    for group in groups.values():
        group["eps"] = ", ".join(group.pop("where"))
        if group["count"] > 1:
            group["message"] += f" (and {group['count'] - 1} more like it)"
    return list(groups.values())


def _evidence_value(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_evidence_value(v) for v in value) + "]"
    if isinstance(value, float):
        return _num(value)
    return str(value)


def _metric_rows(conditions: Sequence[tuple[str, Mapping]]) -> list[dict]:
    """Every metric of the report (clean and each ε) with its bootstrap interval and metric id."""
    clean = conditions[0][1]
    return [
        {
            "name": key,
            "id": (clean.get("ids") or {}).get(key, ""),
            "cells": [
                {"value": _metric(entry, key), "ci": _bounds(entry, key)} for _, entry in conditions
            ],
        }
        for key in clean.get("metrics") or {}
    ]


def _selective_rows(conditions: Sequence[tuple[str, Mapping]]) -> list[dict]:
    return [
        {"condition": label, "aurc": entry["selective"].get("aurc"), "eaurc": entry["selective"].get("eaurc")}
        for label, entry in conditions if entry.get("selective")
    ]
