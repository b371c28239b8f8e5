"""The house rules issue 23 set: the CLI starts without heavy imports, the layering holds,
and the library leaves the caller's global random state alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import advcal_cli

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "scipy", "matplotlib", "sklearn", "transformers", "open_clip")


def test_importing_the_cli_imports_nothing_heavy():
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import advcal.cli"],
                          capture_output=True, text=True, check=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_version_and_help_answer_without_heavy_imports():
    script = ("import sys\nfrom advcal.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
              f"    pass\nprint(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    for args in (["--version"], ["--help"]):
        done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                              check=True)
        assert done.stdout.strip().splitlines()[-1] == "[]", (args, done.stdout)
    assert advcal_cli("--version").stdout.startswith("advcal ")


def test_the_api_loads_only_what_the_default_audit_uses():
    # scikit-learn (isotonic calibration), scipy.optimize (temperature fits) and the report's
    # matplotlib and jinja2 cost seconds to import; the default audit needs none of them until
    # it writes its report, so loading the API (as every command does) must not import them.
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import advcal.api"],
                          capture_output=True, text=True, check=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    unwanted = {"sklearn", "scipy.optimize", "matplotlib", "jinja2", "transformers", "open_clip"}
    assert not imported & unwanted, sorted(imported & unwanted)


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter is a test extra")
def test_the_layers_and_no_cycle_contracts_hold():
    done = subprocess.run(["lint-imports"], capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0 and "0 broken" in done.stdout, done.stdout[-2000:]


def test_building_a_model_leaves_the_callers_random_state_alone():
    from advcal.models import load_model
    from advcal.text import tiny_text_classifier

    torch.manual_seed(1234)
    before = torch.get_rng_state()
    load_model("digits-cnn")
    tiny_text_classifier(["a b c", "d e f"], 2, seed=5)
    assert torch.equal(torch.get_rng_state(), before)


def test_every_api_name_is_reachable_from_the_package_and_loads_lazily():
    import advcal
    import advcal.api

    assert sorted(advcal._API) == sorted(advcal.api.__all__)
    assert advcal.audit is advcal.api.audit and callable(advcal.audit)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        advcal.nothing  # noqa: B018
    done = subprocess.run([sys.executable, "-c", "import advcal, sys; print('torch' in sys.modules)"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_the_cli_is_at_most_400_lines():
    lines = sum(len(path.read_text().splitlines()) for path in (ROOT / "src" / "advcal" / "cli").glob("*.py"))
    assert lines <= 400, lines


@pytest.mark.parametrize("command", ["metrics", "audit", "attack", "illusion", "calibrate", "train",
                                     "zeroshot", "list"])
def test_every_option_is_a_config_field_with_its_default_and_help(command):
    """The command's options are built from its config, so the two cannot drift apart."""
    import dataclasses

    import typer.main

    import advcal.configs as configs
    from advcal.cli.app import app

    kind = {"metrics": configs.MetricsConfig, "audit": configs.AuditConfig, "attack": configs.AttackConfig,
            "illusion": configs.IllusionConfig, "calibrate": configs.CalibrateConfig,
            "train": configs.TrainConfig, "zeroshot": configs.ZeroshotConfig,
            "list": configs.ListConfig}[command]
    click_command = typer.main.get_command(app).commands[command]
    params = {param.name: param for param in click_command.params}
    fields = {field.name: field for field in dataclasses.fields(kind)}
    assert set(params) == set(fields)
    for name, field in fields.items():
        assert params[name].help == field.metadata["help"]
        if field.default is not dataclasses.MISSING:
            assert params[name].default == (None if field.default == () else field.default), name


def test_the_api_defaults_are_the_configs():
    """``advcal.audit(...)`` keyword defaults and ``advcal audit`` option defaults are one set."""
    import inspect

    import advcal.configs as configs
    from advcal.analyses.audit import audit

    keywords = inspect.signature(audit).parameters
    config = configs.AuditConfig()
    assert keywords["attack"].default == config.attack
    assert keywords["n_bins"].default == config.bins
    assert (keywords["seed"].default, keywords["bootstrap"].default, keywords["profile"].default) == (
        config.seed, config.bootstrap, config.profile)


def test_a_command_is_its_api_function(tmp_path):
    """``advcal metrics FILE --json`` and ``advcal.run_metrics(MetricsConfig(...))`` write the same report."""
    import json

    import advcal
    from advcal.configs import MetricsConfig

    subprocess.run([sys.executable, str(ROOT / "examples" / "digits_logits.py"), str(tmp_path / "d.npz")],
                   check=True, capture_output=True)
    done = advcal_cli("metrics", str(tmp_path / "d.npz"), "--json", str(tmp_path / "cli.json"))
    assert done.returncode == 0
    advcal.run_metrics(MetricsConfig(tmp_path / "d.npz", json_path=tmp_path / "api.json"))
    cli, api = (json.loads((tmp_path / f"{kind}.json").read_text()) for kind in ("cli", "api"))
    assert cli == api
