"""Terminal rendering of advcal results (Rich tables): reads results, computes nothing.

The result types are named for type checkers only, so that the report layer imports no
analysis at run time (the analyses sit above it and hand it their results).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from advcal.results.flags import severity_rank

if TYPE_CHECKING:
    from advcal.analyses.audit.result import AuditResult
    from advcal.analyses.fixes import FixesReport
    from advcal.analyses.illusion import IllusionReport
    from advcal.analyses.zeroshot import SuiteResult
    from advcal.data.adversarial import AdversarialSet
    from advcal.metrics.report import CalibrationReport


def _fmt(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{value:.4f}"


def metrics_table(report: CalibrationReport, title: str = "Calibration") -> Table:
    """One row per scalar metric: key, value, interval and what exactly it measures."""
    settings = report.settings
    caption = f"{settings['n_samples']} samples, {settings['n_classes']} classes"
    if report.intervals:
        caption += f"; {settings['ci_level']:.0%} bootstrap intervals, {settings['bootstrap']} replicates"
    table = Table(title=title, caption=caption)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    if report.intervals:
        table.add_column("interval", justify="right")
    table.add_column("definition")
    for key, value in report.items():
        row = [key, _fmt(value)]
        if report.intervals:
            low, high = report.intervals.get(key, (math.nan, math.nan))
            row.append(f"[{_fmt(low)}, {_fmt(high)}]")
        table.add_row(*row, report.descriptions[key])
    return table


def reliability_table(report: CalibrationReport) -> Table:
    """The reliability curve: per non-empty bin, its range, count, confidence and accuracy."""
    curve = report.reliability
    table = Table(title="Reliability (equal-width bins)")
    for name in ("bin", "count", "confidence", "accuracy", "gap"):
        table.add_column(name, justify="right")
    for low, high, count, conf, acc in zip(
        curve["lower"], curve["upper"], curve["count"], curve["confidence"], curve["accuracy"],
        strict=True,
    ):
        if count:
            table.add_row(f"{low:.3f}–{high:.3f}", str(count), _fmt(conf), _fmt(acc), _fmt(acc - conf))
    return table


_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


_VERDICT_STYLE = {"fail": "bold red", "warn": "yellow", "pass": "green"}


def audit_table(result: AuditResult) -> Table:
    """Models x {clean, each ε}: accuracy, ECE, Brier, NLL (and ΔECE under attack) and flags; under
    each model's name its verdict (the reasons follow in :func:`verdict_lines`)."""
    data = result.config["data"]
    table = Table(title=f"Calibration audit — {data['spec']} (split {data['split']}, "
                        f"N = {data['n_samples']})")
    for name in ("model", "inputs", "accuracy", "ECE", "ΔECE", "Brier", "NLL", "flags"):
        table.add_column(name, justify="left" if name in ("model", "inputs") else "right")
    for entry in result.models:
        level = entry.verdict.level
        heading = [entry.name, f"[{_VERDICT_STYLE[level]}]{level.upper()}[/]"]
        rows = [("clean", entry.clean.metrics, None)]
        rows += [(f"{a.attack} ε={a.eps:.4g}", a.metrics, a.eps) for a in entry.attacks]
        for i, (label, metrics, eps) in enumerate(rows):
            flags = [f for f in entry.flags if f.eps == eps]
            worst = max((f.severity.value for f in flags), key=severity_rank, default="")
            delta = "" if eps is None else f"{metrics['ece'] - entry.clean.metrics['ece']:+.4f}"
            table.add_row(
                heading[i] if i < len(heading) else "", label, _fmt(metrics["accuracy"]),
                _fmt(metrics["ece"]), delta, _fmt(metrics["brier"]), _fmt(metrics["nll"]),
                f"[{_SEVERITY_STYLE.get(worst, '')}]{len(flags)}[/]" if flags else "0",
                end_section=i == len(rows) - 1,
            )
    return table


def verdict_lines(result: AuditResult) -> list[str]:
    """One line per model (its verdict and the reason), where its weights came from when a
    factory gave them, and which model is the better calibrated under attack."""
    lines = []
    for entry in result.models:
        level = entry.verdict.level
        lines.append(f"[{_VERDICT_STYLE[level]}]{entry.name}[/] — {escape(entry.verdict.reason)}")
    report = result.to_dict()
    if "comparison" in report:
        lines.append(escape(str(report["comparison"]["sentence"])))
    return lines


def grouped_flags(flags: list[dict[str, object]]) -> list[dict[str, object]]:
    """One entry per (code, severity): the first flag's message and every ε it fires at, worst first."""
    groups: dict[tuple[str, str], dict[str, object]] = {}
    for flag in flags:
        key = (str(flag["code"]), str(flag["severity"]))
        group = groups.setdefault(key, {"code": key[0], "severity": key[1], "message": flag["message"],
                                        "eps": [], "count": 0})
        group["count"] += 1
        if flag["eps"] is not None and flag["eps"] not in group["eps"]:
            group["eps"].append(flag["eps"])
    return sorted(groups.values(), key=lambda g: -severity_rank(str(g["severity"])))


def flags_table(result: AuditResult) -> Table:
    """The red flags grouped: one row per model and code, with the ε values it fires at."""
    table = Table(title="Red flags")
    for name in ("model", "severity", "code", "ε", "message"):
        table.add_column(name)
    for entry in result.models:
        for group in grouped_flags([flag.as_dict() for flag in entry.flags]):
            style = _SEVERITY_STYLE.get(str(group["severity"]), "")
            where = ", ".join(f"{e:g}" for e in group["eps"]) or "clean"
            message = str(group["message"])
            if group["count"] > 1:
                message += f" (and {group['count'] - 1} more like it)"
            table.add_row(entry.name, f"[{style}]{group['severity']}[/]", str(group["code"]), where,
                          escape(message))
    return table


def adversarial_set_table(stored: AdversarialSet) -> Table:
    """A stored set at a glance: its recipe and the source model's accuracy per ε."""
    attack = stored.attack
    table = Table(title=f"Adversarial set {stored.path}", caption=(
        f"{len(stored)} samples in {len(stored.manifest['shards'])} shards; attack {attack['attack']}, "
        f"seed {attack['seed']}"))
    table.add_column("inputs")
    table.add_column("accuracy of the source model", justify="right")
    for key, value in stored.accuracies().items():
        table.add_row(key, f"{value:.3f}")
    return table


def illusion_table(found: IllusionReport, model: str) -> Table:
    """Every check's adversarial accuracy, the verdict and its reasons."""
    budget = found.settings.get("eps", found.settings.get("budget"))
    table = Table(title=f"Illusion of robustness? {model} at ε = {budget:g}",
                  caption=f"verdict: {found.verdict.upper()} — " + "; ".join(found.reasons))
    table.add_column("check")
    table.add_column("adversarial accuracy", justify="right")
    table.add_column("detail")
    for name, check in found.checks.items():
        if "adv_accuracy" not in check:
            continue
        detail = f"T = {check['temperature']:.3g}" if "temperature" in check else str(check.get("attack", ""))
        marker = " ← best" if name == found.best_check else ""
        table.add_row(name + marker, f"{check['adv_accuracy']:.3f}", detail)
    sanity = found.checks["sanity"]
    if "gradients" in found.checks:  # images
        gradients = found.checks["gradients"]
        table.add_row("fgsm", f"{sanity['fgsm_adv_accuracy']:.3f}", "sanity: must not beat PGD")
        table.add_row(f"unbounded pgd at ε = {sanity['unbounded_eps']:g}",
                      f"{sanity['unbounded_adv_accuracy']:.3f}",
                      f"sanity: must reach ≤ {sanity['unbounded_threshold']:.3f} "
                      f"(chance {sanity['chance_accuracy']:.3f})")
        table.add_row("vanishing gradients", f"{gradients['vanishing_gradient_share']:.3f}",
                      f"exactly zero: {gradients['zero_gradient_share']:.3f}")
    else:  # text
        table.add_row("half budget", f"{sanity['half_budget_adv_accuracy']:.3f}", "sanity: must not be lower")
        table.add_row("saturated scores", f"{found.checks['saturation']['saturated_share']:.3f}",
                      "share of texts with float32 probabilities at 0 and 1")
    return table


def fixes_table(found: FixesReport, model: str) -> Table:
    """ECE clean and under the adaptive attack per ε, per fix, with whether it holds."""
    conditions = [key for key in found.baseline if key != "clean"]
    table = Table(title=f"Which calibration fix survives attack? {model}",
                  caption="ECE; attacked columns: the adaptive attacker (frozen-set figures in the JSON). "
                          + " ".join(flag["message"] + "." for flag in found.flags))
    table.add_column("fix")
    table.add_column("clean", justify="right")
    for condition in conditions:
        table.add_column(condition, justify="right")
    table.add_column("holds / helps")
    table.add_row("none", _fmt(found.baseline["clean"]["ece"]),
                  *(_fmt(found.baseline[c]["ece"]) for c in conditions), "")
    for fix in found.fixes:
        adaptive = fix.metrics["adaptive"]
        table.add_row(fix.name, _fmt(fix.metrics["frozen"]["clean"]["ece"]),
                      *(_fmt(adaptive[c]["ece"]) for c in conditions),
                      f"{'yes' if fix.holds else 'no'} / {'yes' if fix.helps else 'no'}")
    return table


def training_table(log: list[dict[str, float]], title: str) -> Table:
    """Accuracy and ECE per epoch: clean, under a fresh attack, and on the frozen set."""
    table = Table(title=f"Training {title}")
    for column in ("epoch", "train loss", "clean acc", "clean ECE", "adv acc", "adv ECE", "frozen acc",
                   "frozen ECE"):
        table.add_column(column, justify="right")
    for row in log:
        cells = [_fmt(row[f"{where}_{metric}"]) for where in ("clean", "adv", "frozen")
                 for metric in ("accuracy", "ece")]
        table.add_row(str(int(row["epoch"])), _fmt(row["train_loss"]), *cells)
    return table


def zeroshot_table(result: SuiteResult, title: str) -> Table:
    """The zero-shot suite: accuracy (%) clean and per attack, ECE, H per dataset, then the average."""
    attacks = list(result.settings["attacks"])
    table = Table(title=f"Zero-shot robustness of {title} (ε = {result.settings['eps']:.4g})",
                  caption="; ".join(f"skipped {s['dataset']}" for s in result.skipped) or None)
    for column in ("dataset", "n", "clean", *attacks, "clean ECE", "adv ECE", "H"):
        table.add_column(column, justify="left" if column == "dataset" else "right")

    def cells(row: dict[str, object]) -> list[str]:
        accuracies = [f"{100 * float(row[f'{k}_accuracy']):.2f}" for k in ("clean", *attacks)]
        return [*accuracies, _fmt(row["clean_ece"]), _fmt(row["adv_ece"]), f"{100 * float(row['h']):.2f}"]

    for row in result.rows:
        table.add_row(str(row["dataset"]), str(row["n"]), *cells(row))
    if result.rows:
        table.add_row("average", "", *cells(result.average), style="bold")
    return table
