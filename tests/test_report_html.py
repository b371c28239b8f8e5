"""The HTML report: renders from a report dict with or without the optional keys, is
self-contained, escapes user text, writes its files, and really paints its figures in a browser."""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from advcal.errors import InputError
from advcal.report import figures, load_report, render_html, write_report
from conftest import require_system_package

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EPSILONS = (0.05, 0.1)
LOWER = [0.0, 0.2, 0.4, 0.6, 0.8]
UPPER = [0.2, 0.4, 0.6, 0.8, 1.0]
METRIC_NAMES = ("accuracy", "ece", "ace", "sce", "mce", "ece_l2", "smooth_ece", "brier", "nll",
                "confidence_mean", "confidence_std", "reliability_slope")


def _entry(shift: float, optional: bool) -> dict:
    """One clean or attacked entry; ``shift`` makes it worse calibrated. Has nulls and empty bins."""
    metrics = {name: round(0.1 + shift + 0.01 * i, 4) for i, name in enumerate(METRIC_NAMES)}
    metrics["accuracy"] = round(0.9 - shift, 4)
    metrics["reliability_slope"] = None
    entry = {
        "metrics": metrics,
        "intervals": {name: [v - 0.02, v + 0.02] for name, v in metrics.items() if v is not None}
        | {"reliability_slope": [None, None]},
        "ids": {name: f"id.{name}" for name in METRIC_NAMES},
        "reliability": {
            "lower": LOWER, "upper": UPPER, "count": [0, 3, 0, 20, 57],
            "confidence": [None, 0.33, None, 0.71, 0.93 + shift / 10],
            "accuracy": [None, 0.0, None, 0.65, 0.9 - shift],
        },
        "per_class": {
            "class": [0, 1, 2], "count": [40, 35, 5],
            "accuracy": [0.9, 0.8, None], "confidence": [0.92, 0.85, None],
            "ece": [0.02 + shift, 0.05 + shift, None], "classwise_ce": [0.01, 0.02, None],
        },
    }
    if optional:
        entry["histogram"] = {"lower": LOWER, "upper": UPPER, "count": [0, 3, 0, 20, 57],
                              "fraction": [0.0, 0.0375, 0.0, 0.25, 0.7125]}
        entry["selective"] = {"aurc": 0.05 + shift, "eaurc": 0.01 + shift, "coverage": [0.25, 0.5, 0.75, 1.0],
                              "risk": [0.0, 0.02 + shift, 0.05 + shift, 0.1]}
    return entry


def _attack(eps: float, optional: bool) -> dict:
    entry = _entry(shift=2 * eps, optional=optional) | {
        "attack": "pgd", "eps": eps,
        "delta": {"ece": 2 * eps, "brier": 2 * eps, "nll": None, "accuracy": -2 * eps},
    }
    if optional:
        # Only the larger ε's ECE change is significant: exactly one highlighted cell per model.
        entry["paired"] = {
            "ece": {"delta": 2 * eps, "ci": [eps, 3 * eps], "p_value": 0.001 if eps > 0.05 else 0.2,
                    "significant": eps > 0.05},
            "brier": {"delta": 2 * eps, "ci": [-eps, 3 * eps], "p_value": 0.4, "significant": False},
        }
        entry["abstention"] = {"target_coverage": 0.8, "threshold": 0.7123, "clean_risk": 0.05,
                               "clean_coverage": 0.8, "adv_risk": 0.3 + eps, "adv_coverage": 0.95}
    return entry


def make_report(names: tuple[str, ...] = ("cnn <b>&", "plain"), optional: bool = False) -> dict:
    """A valid report dict: 2 models, 3 classes, 2 ε; ``optional`` adds the newer keys."""
    models = []
    for name in names:
        model = {
            "name": name,
            "clean": _entry(shift=0.0, optional=optional),
            "attacks": [_attack(eps, optional) for eps in EPSILONS],
            "flags": [
                {"code": "ECE_DELTA", "severity": "error", "message": "ECE rises <script>x</script>",
                 "eps": 0.1, "evidence": {"delta": 0.2, "bin": [0.8, 1.0]}},
                {"code": "ECE_INFLECTION", "severity": "info", "message": "ECE jumps most at eps=0.1",
                 "eps": 0.1, "evidence": {"jump": 0.1}},
                {"code": "SOMETHING_NEW", "severity": "warning", "message": "A check from the future."},
            ],
        }
        if optional:
            model["cost"] = {"forward_passes": 12, "backward_passes": 10,
                             "seconds": {"clean": 0.5, "attack": 2.25, "metrics": 0.75}}
        models.append(model)
    config = {
        "advcal_version": "0.1.0", "data": {"spec": "digits", "split": "test", "n_samples": 80},
        "epsilons": list(EPSILONS),
        "attack": {"attack": "pgd", "norm": "linf", "eps": list(EPSILONS), "steps": 5},
        "n_bins": 5, "bootstrap": 20, "seed": 3, "profile": "default", "models": list(names),
    }
    if optional:
        config["device"] = "cpu"
    return {"schema_version": "0.1", "config": config, "models": models}


@pytest.fixture(scope="module")
def pages() -> dict[bool, str]:
    """The page of the synthetic report without (False) and with (True) the optional keys."""
    return {optional: render_html(make_report(optional=optional)) for optional in (False, True)}


def _figures_total(html: str) -> int:
    return int(re.search(r'data-figures-total="(\d+)"', html).group(1))


@pytest.mark.parametrize(("optional", "per_model"), [(False, 4), (True, 5)])
def test_every_figure_is_an_embedded_png(pages: dict[bool, str], optional: bool, per_model: int) -> None:
    html = pages[optional]
    sources = re.findall(r'<img class="figure" src="([^"]*)" alt="([^"]+)"', html)
    # Reliability, histogram, metrics against ε, per class; risk–coverage only with "selective".
    assert len(sources) == _figures_total(html) == 2 * per_model
    assert len(re.findall(r"<img\b", html)) == len(sources)
    for src, _ in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_SIGNATURE)


def test_page_loads_nothing_from_the_network(pages: dict[bool, str]) -> None:
    for html in pages.values():
        assert not re.search(r"""(?:src|href|url)\s*[=(]\s*["']?\s*(?:https?:)?//""", html, re.IGNORECASE)
        assert "http://" not in html and "https://" not in html
        assert "<link" not in html and "@import" not in html


def test_optional_sections_appear_only_when_the_keys_are_present(pages: dict[bool, str]) -> None:
    plain, full = pages[False], pages[True]
    for absent in ("Selective prediction", "Risk–coverage", "Forward passes", "Device"):
        assert absent not in plain
        assert absent in full
    assert "0.712" in full  # the abstention threshold
    # One significant paired test per model (ECE at ε=0.1) is highlighted, and nothing else.
    assert full.count('class="n sig"') == 2
    assert "sig" not in re.sub(r"significant", "", plain.split("<h2>Summary</h2>")[1].split("</table>")[0])


def test_summary_has_each_model_and_condition(pages: dict[bool, str]) -> None:
    summary = pages[True].split("<h2>Summary</h2>")[1].split("</table>")[0]
    assert summary.count("reference") == 2  # the clean rows
    assert summary.count("ε=0.05") == 2 and summary.count("ε=0.1") == 2
    assert "+0.200" in summary  # Δ ECE at ε=0.1
    assert "—" in summary  # the null Δ NLL


def test_flags_are_explained_worst_first(pages: dict[bool, str]) -> None:
    html = pages[False]
    section = html.split('id="model-1"')[1].split('id="model-2"')[0]
    severities = re.findall(r'<span class="badge sev-(\w+)">', section)
    assert severities == ["error", "warning", "info"]
    assert "Expected calibration error" in section  # ECE_DELTA explained
    assert "a check this version of the report does not describe" in section  # unknown code


def test_user_text_is_escaped(pages: dict[bool, str]) -> None:
    html = pages[False]
    assert "cnn &lt;b&gt;&amp;" in html
    assert "cnn <b>&" not in html
    assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert html.count("<script>") == 1  # only the page's own figure check


def test_rendering_is_deterministic() -> None:
    report = make_report(names=("only",))
    assert render_html(report) == render_html(copy.deepcopy(report))


def test_inflection_is_drawn() -> None:
    values = {"ECE": [0.01, 0.2, 0.5]}
    intervals = {"ECE": [[0.0, 0.02], None, [0.4, 0.6]]}
    assert figures.metrics_vs_eps([0, 0.05, 0.1], values, intervals, 0.05) != figures.metrics_vs_eps(
        [0, 0.05, 0.1], values, intervals, None
    )


def test_degenerate_inputs_still_draw() -> None:
    nulls = [None] * 5
    empty = {"lower": LOWER, "upper": UPPER, "count": [0] * 5, "confidence": nulls, "accuracy": nulls}
    assert figures.reliability_diagrams(["clean"], [empty], [None]).startswith(PNG_SIGNATURE)
    histogram = figures.confidence_histograms(["clean"], [empty | {"fraction": [0.0] * 5}])
    assert histogram.startswith(PNG_SIGNATURE)
    heatmap = figures.per_class_heatmap([0, 1], [None, 3], ["clean", "ε=0.1"], [[None, None], [None, None]])
    assert heatmap.startswith(PNG_SIGNATURE)


def test_write_report_writes_page_and_figures(tmp_path: Path) -> None:
    report = make_report(names=("a/b", "a?b"), optional=True)
    path = write_report(report, tmp_path / "out" / "report.html", figures_dir=tmp_path / "figs")
    assert path == tmp_path / "out" / "report.html"
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    kinds = ("reliability", "histogram", "metrics", "per_class", "risk_coverage")
    # Both names sanitise to "a_b": the second model gets a suffix instead of overwriting the first.
    expected = {f"{stem}-{kind}.png" for stem in ("a_b", "a_b-2") for kind in kinds}
    written = {p.name: p.read_bytes() for p in (tmp_path / "figs").iterdir()}
    assert set(written) == expected
    for name, png in written.items():
        assert png.startswith(PNG_SIGNATURE)
        assert base64.b64encode(png).decode("ascii") in html, name


def test_load_report_round_trip(tmp_path: Path) -> None:
    report = make_report(names=("only",))
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    assert load_report(path) == report


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "not found"),
        ("{not json", "invalid JSON"),
        (json.dumps({"schema_version": "0.1", "config": {}}), "without 'models'"),
        (json.dumps([1, 2]), "got [1, 2]"),
    ],
)
def test_load_report_refuses_bad_input(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=r"^report: expected") as caught:
        load_report(path)
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)


def test_render_refuses_a_dict_that_is_not_a_report() -> None:
    with pytest.raises(InputError, match=r"^report: expected .*without 'schema_version'"):
        render_html({"models": []})


def _chromium() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    require_system_package(browser is not None, "a headless browser (chromium on PATH)",
                           "apt-get install chromium")
    return browser


def _run_browser(browser: str, profile: Path, *arguments: str) -> subprocess.CompletedProcess:
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--hide-scrollbars", "--virtual-time-budget=5000", *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


@pytest.mark.slow
def test_browser_renders_every_figure(tmp_path: Path) -> None:
    from PIL import Image

    browser = _chromium()
    page = write_report(make_report(optional=True), tmp_path / "report.html")
    total = _figures_total(page.read_text(encoding="utf-8"))
    assert total > 0

    dom = _run_browser(browser, tmp_path / "profile", "--dump-dom", page.as_uri()).stdout
    counted = re.search(r'<span id="figures-rendered">(\d+)</span>', dom)
    assert counted, "the page's load script did not run in the browser"
    assert int(counted.group(1)) == total
    assert f'data-figures-rendered="{total}"' in dom

    shot = tmp_path / "shot.png"
    _run_browser(browser, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,4000",
                 page.as_uri())
    image = Image.open(shot).convert("RGB")
    assert image.width == 1280
    r, g, b = np.asarray(image, dtype=np.int16).transpose(2, 0, 1)
    non_white = int((np.minimum(np.minimum(r, g), b) < 235).sum())
    # Saturated colour comes almost only from the figures (matplotlib blue, the orange-red ε ramp);
    # the page's own badges and links are a few hundred pixels at most.
    blue = int(((b > 150) & (b - r > 80)).sum())
    orange = int(((r > 200) & (r - b > 120)).sum())
    assert non_white > 100_000, non_white
    assert blue > 10_000, blue
    assert orange > 10_000, orange
