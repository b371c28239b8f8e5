"""The ``advcal`` command. Thin: it parses options and calls the library.

Errors a user can cause print one line on stderr and exit with status 2, never a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

import advcal
from advcal._core.allocator import keep_freed_memory
from advcal._core.errors import AdvcalError
from advcal.defaults import AUDIT, ILLUSION_FAIL_ON

app = typer.Typer(
    name="advcal",
    help="Can this classifier's confidence be trusted under adversarial attack?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Typer re-exports click's BadParameter whether it vendors click or depends on it; its base
# ClickException is what every usage error raises when standalone mode is off.
_USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
console = Console()
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"advcal {advcal.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """advcal: calibration of classifiers on clean and adversarial inputs."""


@app.command()
def metrics(
    file: Annotated[Path, typer.Argument(help="A .npz or .safetensors file of scores and labels.")],
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the report as JSON here.")
    ] = None,
    n_bins: Annotated[int, typer.Option(help="Number of confidence bins.")] = 15,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates (0: no intervals).")] = 200,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    smooth: Annotated[bool, typer.Option(help="Compute smooth ECE.")] = True,
    scores_key: Annotated[
        str | None,
        typer.Option(help="Array holding the scores (default: logits, probs or log_probs)."),
    ] = None,
    inputs: Annotated[
        str | None,
        typer.Option(help="What the scores are: logits, probs or log_probs (default: the key)."),
    ] = None,
) -> None:
    """A calibration report from saved scores and labels.

    The file holds the scores under "logits", "probs" or "log_probs" (the key says which)
    and the labels under "labels" or "y"; optionally sample indices under "index".
    """
    from advcal._core.atomic import write_json_atomic
    from advcal.metrics import calibration_report
    from advcal.metrics.files import read_scores_file
    from advcal.report.console import metrics_table, reliability_table

    data = read_scores_file(file, scores_key)
    with err_console.status("Computing calibration metrics…"):
        report = calibration_report(
            data.scores, data.labels, n_bins=n_bins, inputs=inputs or data.inputs,
            smooth=smooth, bootstrap=bootstrap, seed=seed, index=data.index,
        )
    console.print(reliability_table(report))
    console.print(metrics_table(report, title=f"Calibration of {file.name}"))
    if json_path is not None:
        payload = {"advcal_version": advcal.__version__, "source": str(file), **report.to_dict()}
        write_json_atomic(json_path, payload)
        console.print(f"Wrote {json_path}")


@app.command()
def audit(
    model: Annotated[
        list[str] | None,
        typer.Option(help="Model spec, repeatable: a built-in name, package.module:factory or "
                          "file.py:factory. Default: digits-cnn and digits-cnn-at."),
    ] = None,
    weights: Annotated[
        list[Path] | None, typer.Option(help="Weights per --model (.safetensors or a .pt state dict).")
    ] = None,
    name: Annotated[list[str] | None, typer.Option(
        help="A name per --model, repeatable (default: the model or factory name, then the weights "
             "file's stem where two would clash).")] = None,
    normalize: Annotated[
        str | None, typer.Option(help="MEAN,STD (or per-channel means then stds) the models expect.")
    ] = None,
    data: Annotated[str | None, typer.Option(help=DATA_HELP + " Default: digits.")] = None,
    split: Annotated[str | None, typer.Option(help=SPLIT_HELP)] = None,
    limit: Annotated[int | None, typer.Option(help="Audit at most N samples (stratified).")] = None,
    adv_set: Annotated[Path | None, typer.Option(
        help="Evaluate a stored adversarial set (made by advcal attack) instead of attacking; "
             "its data, ε and attack are used.")] = None,
    eps: Annotated[str | None, typer.Option(help=EPS_HELP)] = None,
    attack: Annotated[str, typer.Option(help=ATTACK_HELP)] = AUDIT.attack,
    steps: Annotated[int | None, typer.Option(help=STEPS_HELP)] = None,
    bins: Annotated[int, typer.Option(help="Confidence bins.")] = AUDIT.n_bins,
    seed: Annotated[int, typer.Option(help="Seed of attack starts and bootstrap.")] = AUDIT.seed,
    batch_size: Annotated[int | None, typer.Option(
        help="Samples per forward pass (default: 256 images, 32 texts).")] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates for intervals.")] = AUDIT.bootstrap,
    profile: Annotated[str, typer.Option(
        help="Flag thresholds and so the verdict: default, strict or lenient.")] = AUDIT.profile,
    fail_on: Annotated[str, typer.Option(
        help="Exit with status 1, after writing every output, when a model's verdict reaches this: "
             "error (a fail), warning (a warn or a fail) or never.")] = AUDIT.fail_on,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N, mps or auto.")] = "cpu",
    illusion: Annotated[bool, typer.Option(
        help="Also check each model for an illusion of robustness (about 6 more attack runs).")] = False,
    fixes: Annotated[bool, typer.Option(
        help="Also score every post-hoc calibration fix clean and under attack (the fixes table).")] = False,
    calibrator: Annotated[list[Path] | None, typer.Option(
        help="A calibrator saved by advcal calibrate, per --model: audit the calibrated model.")] = None,
    ensemble: Annotated[bool, typer.Option(
        help="Audit the --model arguments as one ensemble (probabilities averaged).")] = False,
    text_column: Annotated[str, typer.Option(help="Text data: the column holding the texts.")] = "text",
    label_column: Annotated[str, typer.Option(help="Text data: the column holding the labels.")] = "label",
    queries: Annotated[int, typer.Option(help="Text attacks: queries per text.")] = 2000,
    classes: Annotated[Path | None, typer.Option(help=CLASSES_HELP)] = None,
    out: Annotated[
        Path, typer.Option(help="Output folder: report.html, report.json, samples.npz, figures/.")
    ] = Path("advcal-report"),
) -> None:
    """Audit calibration on clean and adversarial inputs over an ε sweep: red flags and a verdict.

    With no options: the shipped digits-cnn and digits-cnn-at on scikit-learn's digits (advcal's
    own fixed test split, 360 images; train your own digits models on --split train, as advcal
    train does, never on scikit-learn's usual train_test_split, which overlaps it). A user's own
    npz:, folder:, csv: or jsonl: file is audited whole unless --split says otherwise. Text
    classifiers (--model hf:DIR, --data csv:PATH / jsonl:PATH / tweets) are audited under the
    word, char or embedding-pgd attack (--attack), whose budgets take the place of ε (--eps).
    """
    from advcal._core.validation import parse_numbers
    from advcal.engine.distributed import joined
    from advcal.results.verdict import check_fail_on
    from advcal.text.loading import default_text_split, is_text_audit

    check_fail_on(fail_on)
    if is_text_audit(model or [], data):
        unsupported = {"--normalize": normalize, "--adv-set": adv_set, "--device": device != "cpu"}
        given = [flag for flag, value in unsupported.items() if value]
        if given:
            from advcal._core.errors import ConfigError

            raise ConfigError(f"{', '.join(given)}: not available for text audits yet")
        from advcal.analyses.text_audit import audit_text

        text_attack = "word" if attack == "pgd" else attack  # pgd, the image default, means "the default"
        split = split or default_text_split(data or "")
        classifiers, texts, calibration = _text_audit_inputs(
            model or [], weights, name, data or "", split=split, limit=limit, text_column=text_column,
            label_column=label_column, calibrator=calibrator, ensemble=ensemble, calibrate=illusion or fixes)
        if text_attack == "embedding-pgd":
            params: dict[str, object] = {"steps": steps} if steps else {}
        else:
            params = {"query_budget": queries}
        text_batch = 32 if batch_size is None else batch_size
        with joined("cpu") as ranks:  # under torchrun: every rank audits its batches, rank 0 reports
            with _progress_bar(disable=ranks.rank != 0) as bar:
                result = audit_text(
                    classifiers, texts, parse_numbers(eps, "eps") if eps else None, text_attack, params,
                    n_bins=bins, bootstrap=bootstrap, seed=seed, batch_size=text_batch, profile=profile,
                    split=split, illusion=illusion, fixes=fixes, calibration=calibration,
                    progress=_audit_progress(bar, classifiers, len(texts)),
                )
            if ranks.rank == 0:
                _show_and_save(result, out, fail_on)
        return
    from advcal._core.errors import ConfigError
    from advcal.analyses.audit import audit as run_audit
    from advcal.data import AdversarialSet, default_split, load_data

    if adv_set is not None:
        if data is not None or limit is not None or split is not None:
            raise ConfigError("adv-set: a stored set brings its own data; leave out --data, --split and "
                              "--limit")
        source = AdversarialSet(adv_set)
    else:
        source = load_data(data or "digits", split=split or default_split(data or "digits"), limit=limit)
    models = _load_models(model or ["digits-cnn", "digits-cnn-at"], weights, normalize,
                          _class_names(classes, source), name)
    models = _calibrated(models, calibrator, ensemble)
    epsilons = parse_numbers(eps, "eps") if eps else None
    params = _attack_params(attack, steps)
    with joined(device) as ranks:  # under torchrun: every rank audits its part, rank 0 reports
        lead = ranks.rank == 0
        with _progress_bar(disable=not lead) as bar:
            result = run_audit(
                models, source, epsilons, attack, params, n_bins=bins, bootstrap=bootstrap, seed=seed,
                batch_size=AUDIT.batch_size if batch_size is None else batch_size, profile=profile,
                device=device, illusion=illusion, fixes=fixes,
                progress=_audit_progress(bar, models, len(source)),
            )
        if lead:
            _show_and_save(result, out, fail_on)


@app.command("attack")
def attack_command(
    model: Annotated[str, typer.Option(help="Model spec: a built-in name, package.module:factory or "
                                            "file.py:factory.")] = "digits-cnn",
    weights: Annotated[Path | None, typer.Option(help="Weights (.safetensors or a .pt state dict).")] = None,
    normalize: Annotated[
        str | None, typer.Option(help="MEAN,STD (or per-channel means then stds) the model expects.")
    ] = None,
    data: Annotated[str, typer.Option(help=DATA_HELP)] = "digits",
    split: Annotated[str | None, typer.Option(help=SPLIT_HELP)] = None,
    limit: Annotated[int | None, typer.Option(help="Attack at most N samples (stratified).")] = None,
    eps: Annotated[str | None, typer.Option(help=EPS_HELP + " Default: suited to the data.")] = None,
    attack: Annotated[str, typer.Option(help=ATTACK_HELP)] = "pgd",
    steps: Annotated[int | None, typer.Option(help=STEPS_HELP)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the attack's per-sample randomness.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Samples per forward pass.")] = 256,
    shard_size: Annotated[int, typer.Option(help="Samples per shard file (the unit of resumption).")] = 1024,
    compress: Annotated[str, typer.Option(help="Shard compression: none or zstd.")] = "none",
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N, mps or auto.")] = "cpu",
    out: Annotated[
        Path, typer.Option(help="The set's folder (resumed when it holds the same recipe).")
    ] = Path("advcal-adv-set"),
) -> None:
    """Attack once with a fixed recipe and store the adversarial set (resumable; audit it with --adv-set)."""
    from advcal._core.validation import parse_numbers
    from advcal.analyses.adversarial_sets import make_adversarial_set
    from advcal.analyses.audit.pipeline import default_epsilons
    from advcal.data import default_split, load_data
    from advcal.engine.distributed import joined
    from advcal.report.console import adversarial_set_table

    source = load_data(data, split=split or default_split(data), limit=limit)
    (spec, net), = _load_models([model], [weights] if weights else None, normalize,
                                _class_names(None, source)).items()
    epsilons = parse_numbers(eps, "eps") if eps else default_epsilons(source)
    with joined(device) as ranks:  # under torchrun: ranks attack shards in turn, rank 0 writes
        lead = ranks.rank == 0
        with _progress_bar(disable=not lead) as bar:
            task = bar.add_task(f"attacking {spec}", total=len(source))
            stored = make_adversarial_set(
                net, source, epsilons, out, attack, _attack_params(attack, steps), seed=seed,
                shard_size=shard_size, batch_size=batch_size,
                compression=None if compress == "none" else compress, model_spec=spec, device=device,
                progress=lambda done, total: bar.update(task, completed=done),
            )
        if lead:
            console.print(adversarial_set_table(stored))
            console.print(f"Wrote {out}")


@app.command()
def illusion(
    model: Annotated[str, typer.Option(help="Model spec (as served: any temperature is part of it).")] = (
        "digits-cnn-cold"),
    weights: Annotated[Path | None, typer.Option(help="Weights (.safetensors or a .pt state dict).")] = None,
    normalize: Annotated[
        str | None, typer.Option(help="MEAN,STD (or per-channel means then stds) the model expects.")
    ] = None,
    data: Annotated[str, typer.Option(help=DATA_HELP)] = "digits",
    split: Annotated[str, typer.Option(help="Held-out split the figures are measured on.")] = "test",
    calibration_split: Annotated[str, typer.Option(
        help="Clean split the cal temperature is fitted on and opt searches on.")] = "calibration",
    limit: Annotated[int | None, typer.Option(help="At most N samples of each split (stratified).")] = None,
    eps: Annotated[str | None, typer.Option(help="The L∞ budget (one value, fractions allowed). "
                                                  "Default: the middle of the data's audit sweep.")] = None,
    steps: Annotated[int | None, typer.Option(help="PGD and APGD iterations (default 20).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every attack's per-sample randomness.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Samples per pass.")] = 256,
    full: Annotated[bool, typer.Option(help="Run every check, even when the cheap ones settle it.")] = False,
    attack: Annotated[str | None, typer.Option(
        help="Images: one more registered attack run as a check (e.g. autoattack). Text models: the "
             "score-based attack, word (default) or char.")] = None,
    queries: Annotated[int, typer.Option(help="Text models: queries per text.")] = 2000,
    text_column: Annotated[str, typer.Option(help="Text data: the column holding the texts.")] = "text",
    label_column: Annotated[str, typer.Option(help="Text data: the column holding the labels.")] = "label",
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the findings as JSON.")] = None,
    fail_on: Annotated[str, typer.Option(
        help="Exit with status 1, after writing every output, when the verdict reaches this: illusion, "
             "suspect (a suspect or an illusion) or never.")] = ILLUSION_FAIL_ON,
) -> None:
    """Is the model's robustness genuine, or an illusion made by miscalibration?

    Text classifiers (--model hf:DIR or tweets-minilm, --data csv:/jsonl:/tweets) are checked with
    the score-based word or char attack; --eps is then the largest fraction of words changed.
    """
    from advcal._core.atomic import write_json_atomic
    from advcal._core.errors import InputError
    from advcal._core.validation import parse_numbers
    from advcal.analyses.audit.pipeline import default_epsilons
    from advcal.analyses.illusion import check_illusion, illusion_fails
    from advcal.data import load_data
    from advcal.report.console import illusion_table
    from advcal.text.loading import is_text_audit

    illusion_fails("genuine", fail_on)  # checks --fail-on before any work
    values = parse_numbers(eps, "eps") if eps else None
    if values is not None and len(values) != 1:
        raise InputError(f"eps: expected one budget, got {len(values)} ({eps})")
    if is_text_audit([model], data):
        from advcal.analyses.text_illusion import check_text_illusion
        from advcal.text.loading import load_text_data, load_text_model

        net = load_text_model(model)
        columns = {"text_column": text_column, "label_column": label_column}
        test = load_text_data(data, split=split, limit=limit, **columns)
        calibration = load_text_data(data, split=calibration_split, limit=limit, **columns)
        with err_console.status(f"Checking {model} for an illusion of robustness…"):
            budget = values[0] if values else 0.2
            found = check_text_illusion(net, test, calibration, budget, attack or "word",
                                        {"query_budget": queries}, seed=seed, full=full)
        spec = model
    else:
        test = load_data(data, split=split, limit=limit)
        (spec, net), = _load_models([model], [weights] if weights else None, normalize,
                                    _class_names(None, test)).items()
        calibration = load_data(data, split=calibration_split, limit=limit)
        budget = values[0] if values else sorted(default_epsilons(test))[1]
        with err_console.status(f"Checking {spec} for an illusion of robustness…"):
            found = check_illusion(net, test, calibration, budget, seed=seed, batch_size=batch_size,
                                   full=full, attack=attack, **({"steps": steps} if steps else {}))
    console.print(illusion_table(found, spec))
    if json_path is not None:
        write_json_atomic(json_path, {"model": spec, **found.to_dict()})
        console.print(f"Wrote {json_path}")
    if illusion_fails(found.verdict, fail_on):
        err_console.print(f"advcal: the verdict {found.verdict} reaches --fail-on {fail_on}: exit status 1",
                          markup=False)
        raise typer.Exit(1)


@app.command()
def calibrate(
    model: Annotated[str, typer.Option(help="Model spec (uncalibrated logits).")] = "digits-cnn",
    weights: Annotated[Path | None, typer.Option(help="Weights (.safetensors or a .pt state dict).")] = None,
    normalize: Annotated[
        str | None, typer.Option(help="MEAN,STD (or per-channel means then stds) the model expects.")
    ] = None,
    data: Annotated[str, typer.Option(help=DATA_HELP)] = "digits",
    split: Annotated[str, typer.Option(help="Split the fixes are scored on.")] = "test",
    calibration_split: Annotated[
        str, typer.Option(help="Split the calibrators are fitted on.")] = "calibration",
    limit: Annotated[int | None, typer.Option(help="At most N samples of each split (stratified).")] = None,
    eps: Annotated[str | None, typer.Option(help=EPS_HELP + " Default: suited to the data.")] = None,
    attack: Annotated[str, typer.Option(help=ATTACK_HELP)] = "pgd",
    steps: Annotated[int | None, typer.Option(help=STEPS_HELP)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the attacks' per-sample randomness.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Samples per pass.")] = 256,
    calibrators: Annotated[str, typer.Option(
        help="Comma-separated: temperature, vector, isotonic, histogram, adversarial-temperature."
    )] = "temperature,vector,isotonic,histogram,adversarial-temperature",
    fit_on: Annotated[str, typer.Option(help="Comma-separated: clean, adversarial, mixed.")] = (
        "clean,adversarial,mixed"),
    queries: Annotated[int, typer.Option(help="Text models: queries per text.")] = 2000,
    text_column: Annotated[str, typer.Option(help="Text data: the column holding the texts.")] = "text",
    label_column: Annotated[str, typer.Option(help="Text data: the column holding the labels.")] = "label",
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the fixes table as JSON.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Save every fitted calibrator in OUT/<kind>-<fit_on>/ (audit with --calibrator).")] = None,
) -> None:
    """Which post-hoc calibration fix survives attack? Fit each, score it clean and attacked.

    Text classifiers (--model hf:DIR or tweets-minilm, --data csv:/jsonl:/tweets) are attacked by
    the score-based word or char attack (--attack); --eps is then the fractions of words changed.
    """
    from advcal._core.atomic import write_json_atomic
    from advcal._core.validation import parse_numbers
    from advcal.analyses.audit.pipeline import default_epsilons
    from advcal.analyses.fixes import evaluate_fixes
    from advcal.data import load_data
    from advcal.report.console import fixes_table
    from advcal.text.loading import is_text_audit

    chosen = {"calibrators": _names(calibrators), "fit_on": _names(fit_on)}
    if is_text_audit([model], data):
        from advcal._core.errors import ConfigError
        from advcal._core.validation import check_choice
        from advcal.analyses.text_fixes import evaluate_text_fixes
        from advcal.text.attack_table import DEFAULT_BUDGETS, SCORE_ATTACKS
        from advcal.text.loading import load_text_data, load_text_model

        if normalize:
            raise ConfigError("--normalize: not available for text models (they read texts, not pixels)")
        text_attack = "word" if attack == "pgd" else attack  # pgd, the image default, means "the default"
        check_choice(text_attack, "attack", SCORE_ATTACKS)
        columns = {"text_column": text_column, "label_column": label_column}
        test = load_text_data(data, split=split, limit=limit, **columns)
        calibration = load_text_data(data, split=calibration_split, limit=limit, **columns)
        spec, net = model, load_text_model(model, weights=weights)
        budgets = parse_numbers(eps, "eps") if eps else list(DEFAULT_BUDGETS[text_attack])
        with err_console.status(f"Fitting and attacking calibrators of {spec}…"):
            found = evaluate_text_fixes(net, calibration, test, budgets, attack=text_attack,
                                        attack_params={"query_budget": queries}, seed=seed, **chosen)
    else:
        test = load_data(data, split=split, limit=limit)
        (spec, net), = _load_models([model], [weights] if weights else None, normalize,
                                    _class_names(None, test)).items()
        calibration = load_data(data, split=calibration_split, limit=limit)
        epsilons = parse_numbers(eps, "eps") if eps else default_epsilons(test)
        with err_console.status(f"Fitting and attacking calibrators of {spec}…"):
            found = evaluate_fixes(net, calibration, test, epsilons, attack=attack,
                                   attack_params=_attack_params(attack, steps), seed=seed,
                                   batch_size=batch_size, **chosen)
    console.print(fixes_table(found, spec))
    if out is not None:
        for fix in found.fixes:
            fix.fitted.save(out / f"{fix.calibrator}-{fix.fit_on}")
        write_json_atomic(out / "fixes.json", {"model": spec, **found.to_dict()})
        console.print(f"Wrote {len(found.fixes)} calibrators and fixes.json to {out}")
    if json_path is not None:
        write_json_atomic(json_path, {"model": spec, **found.to_dict()})
        console.print(f"Wrote {json_path}")


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@app.command("train")
def train_command(
    recipe: Annotated[str, typer.Option(
        help="standard, pgd-at, trades, fgsm-rs; CLIP (--model clip:ARCH): ucat, tecoa, fare.")] = "standard",
    model: Annotated[str, typer.Option(
        help="Architecture: a built-in name (fresh weights) or package.module:factory / file.py:factory; "
             "a text classifier to fine-tune: hf:DIR or tweets-minilm."
    )] = "digits-cnn",
    data: Annotated[str, typer.Option(help=DATA_HELP)] = "digits",
    split: Annotated[str, typer.Option(help="Training split.")] = "train",
    val_split: Annotated[str, typer.Option(help="Split of the per-epoch validation subset.")] = "calibration",
    val_limit: Annotated[int, typer.Option(help="Samples in the validation subset (stratified).")] = 256,
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Samples per step.")] = 64,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 3e-3,
    optimizer: Annotated[str | None, typer.Option(
        help="adam, or sgd (momentum 0.9). Default adam; CLIP recipes sgd.")] = None,
    schedule: Annotated[str | None, typer.Option(
        help="Learning rate: constant or cosine (to 0). Default constant; CLIP recipes cosine.")] = None,
    warmup_epochs: Annotated[float | None, typer.Option(
        help="Linear learning-rate warm-up, in epochs. Default 0; CLIP recipes 1 (when epochs > 1).")] = None,
    eps: Annotated[str | None, typer.Option(
        help="ε of the training (and tracking) attack, input units (default 0.1; CLIP: 1/255).")] = None,
    steps: Annotated[int | None, typer.Option(
        help="Steps of the training attack (default 7; CLIP recipes 2).")] = None,
    alpha: Annotated[str | None, typer.Option(
        help="Step of the training attack (default 2.5 ε / steps; CLIP recipes 1/255).")] = None,
    trades_beta: Annotated[float, typer.Option(help="TRADES' β.")] = 6.0,
    train_temperature: Annotated[float, typer.Option(help="Divide logits by T in the training loss.")] = 1.0,
    gradnorm: Annotated[bool, typer.Option(help="Scale the global gradient norm to 1 every step.")] = False,
    freeze_bn_last: Annotated[float, typer.Option(help="Freeze BatchNorm for this last fraction.")] = 0.0,
    pre_head_temperature: Annotated[bool, typer.Option(
        help="A learnable temperature before the classification head.")] = False,
    eps_warmup: Annotated[float, typer.Option(help="Ramp ε up linearly over this first fraction.")] = 0.0,
    head_only: Annotated[bool, typer.Option(
        help="Train only the last linear layer (a probe on a frozen encoder).")] = False,
    kl_weight: Annotated[float | None, typer.Option(
        help="ucat: λ of the Dirichlet KL (default 1e5 / exp(softplus(2 / τ′))).")] = None,
    dirichlet_tau: Annotated[float, typer.Option(help="ucat: τ′ of the Dirichlet concentrations.")] = 0.07,
    weights: Annotated[Path | None, typer.Option(
        help="Starting weights to fine-tune (default: fresh ones; CLIP: the pretrained checkpoint).")] = None,
    classes: Annotated[Path | None, typer.Option(help=CLASSES_HELP)] = None,
    text_column: Annotated[str, typer.Option(help="Text data: the column holding the texts.")] = "text",
    label_column: Annotated[str, typer.Option(help="Text data: the column holding the labels.")] = "label",
    seed: Annotated[int, typer.Option(help="Seed of initialisation, shuffling and attacks.")] = 0,
    frozen_from: Annotated[str | None, typer.Option(
        help="Model spec the frozen validation set is crafted against (default: the untrained one).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    out: Annotated[Path, typer.Option(help="The run's folder.")] = Path("advcal-train"),
) -> None:
    """Train with a recipe, tracking calibration (clean, fresh attack, frozen set) every epoch.

    Text classifiers (--model hf:DIR or tweets-minilm, --data csv:PATH / jsonl:PATH / tweets) are
    fine-tuned from their weights; their adversarial recipes perturb the input embeddings, with
    --eps an L2 radius per token in embedding units.
    """
    from safetensors.torch import save_file

    from advcal._core.errors import InputError
    from advcal._core.validation import parse_numbers
    from advcal.data import load_data
    from advcal.models import load_model, load_weights, new_model
    from advcal.models.state import unique_state_dict
    from advcal.report.console import training_table
    from advcal.text.loading import is_text_audit, load_text_data, load_text_model
    from advcal.training import Recipe, train

    # UCAT's settings are the CLIP recipes' defaults: PGD with ε = 1/255 and two steps of 1/255;
    # SGD with momentum, a cosine schedule after a one-epoch warm-up.
    clip = recipe in CLIP_RECIPES
    warmup = 1.0 if clip and epochs > 1 else 0.0
    default_eps, default_steps, default_alpha = ("1/255", 2, "1/255") if clip else ("0.1", 7, None)
    budgets = parse_numbers(eps or default_eps, "eps")
    if len(budgets) != 1:
        raise InputError(f"eps: expected one training budget, got {len(budgets)} ({eps})")
    step_size = alpha or default_alpha
    plan = Recipe(recipe, eps=budgets[0], steps=steps or default_steps,
                  alpha=parse_numbers(step_size, "alpha")[0] if step_size else None, trades_beta=trades_beta,
                  train_temperature=train_temperature, gradnorm=gradnorm, freeze_bn_last=freeze_bn_last,
                  pre_head_temperature=pre_head_temperature, eps_warmup=eps_warmup, head_only=head_only,
                  kl_weight=kl_weight, dirichlet_tau=dirichlet_tau, seed=seed)
    text = is_text_audit([model], data)
    if text:
        columns = {"text_column": text_column, "label_column": label_column}
        net = load_text_model(model, weights=weights)
        train_data = load_text_data(data, split=split, **columns)
        validation = load_text_data(data, split=val_split, limit=val_limit, **columns)
        reference = load_text_model(frozen_from) if frozen_from else None
    else:
        train_data = load_data(data, split=split)
        validation = load_data(data, split=val_split, limit=val_limit)
        if model.startswith("clip:"):  # fine-tuned from its pretrained weights
            (net,) = _load_models([model], [weights] if weights else None, None,
                                  _class_names(classes, train_data)).values()
        else:
            from advcal._core.rng import torch_seeded

            with torch_seeded(seed):  # the initial weights come from the seed alone
                net = new_model(model)
            if weights is not None:  # or from a checkpoint, to fine-tune
                load_weights(net, weights)
        reference = load_model(frozen_from) if frozen_from else None
    with _progress_bar() as bar:
        task = bar.add_task(f"training {model} ({recipe})", total=epochs)
        run = train(net, train_data, validation, plan, epochs=epochs, out=out, batch_size=batch_size, lr=lr,
                    optimizer=optimizer or ("sgd" if clip else "adam"),
                    schedule=schedule or ("cosine" if clip else "constant"),
                    warmup_epochs=warmup if warmup_epochs is None else warmup_epochs,
                    frozen_from=reference, resume=resume,
                    on_epoch=lambda row: bar.update(task, completed=row["epoch"] + 1))
    console.print(training_table(run.log, f"{model}, {recipe}"))
    if text and model.startswith("hf:"):  # a Hugging Face folder in, a Hugging Face folder out
        run.model.save_pretrained(out / "model")
        console.print(f"Wrote {out}/model (audit it with --model hf:{out}/model), log.csv and checkpoints")
        return
    save_file(unique_state_dict(run.model), str(out / "model.safetensors"))
    console.print(f"Wrote {out}/model.safetensors (audit it with --model {model} --weights "
                  f"{out}/model.safetensors), log.csv and checkpoints")


@app.command()
def zeroshot(
    model: Annotated[str, typer.Option(help="clip:ARCH, an open_clip architecture (e.g. clip:ViT-B-32).")],
    weights: Annotated[Path | None, typer.Option(help="The local CLIP checkpoint.")] = None,
    suite: Annotated[Path | None, typer.Option(
        help="Folder with one sub-folder per dataset (ROOT/cifar10/<class>/...).")] = None,
    datasets: Annotated[str | None, typer.Option(
        help="Comma-separated dataset names (default: the paper's 16).")] = None,
    spec: Annotated[list[str] | None, typer.Option(
        help="NAME=DATA_SPEC, repeatable: read NAME from any data spec (npz:, cifar10:DIR, ...).")] = None,
    templates: Annotated[Path | None, typer.Option(
        help="Prompt templates, one per line with {} for the class name.")] = None,
    eps: Annotated[str, typer.Option(help="L∞ budget in pixel units.")] = "1/255",
    attacks: Annotated[str, typer.Option(help="Comma-separated: pgd, cw, autoattack.")] = "pgd,cw,autoattack",
    steps: Annotated[int, typer.Option(help="Iterations of every attack.")] = 100,
    limit: Annotated[int | None, typer.Option(help="At most N images per dataset (stratified).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the attacks' random starts.")] = 0,
    out: Annotated[Path, typer.Option(help="Results folder (per-dataset files are resumed).")] = Path(
        "advcal-zeroshot"),
) -> None:
    """The zero-shot robustness suite: clean and robust accuracy, ECE and H over many datasets."""
    from advcal._core.errors import ConfigError, InputError
    from advcal._core.validation import parse_numbers
    from advcal.analyses.zeroshot import run_zeroshot_suite
    from advcal.clip import load_clip
    from advcal.report.console import zeroshot_table

    if not model.startswith("clip:"):
        raise ConfigError(f"model: expected clip:ARCH (an open_clip architecture), got {model!r}")
    named_specs = {}
    for entry in spec or []:
        name, sep, value = entry.partition("=")
        if not sep or not name or not value:
            raise InputError(f"spec: expected NAME=DATA_SPEC, got {entry!r}")
        named_specs[name] = value
    prompts = None
    if templates is not None:
        if not templates.is_file():
            raise InputError(f"templates: {templates} does not exist; expected templates, one per line")
        prompts = [line.strip() for line in templates.read_text("utf-8").splitlines() if line.strip()]
    heads = []

    def head_for(names: list[str]):  # the CLIP is loaded once, at the first dataset found
        if not heads:
            heads.append(load_clip(model.removeprefix("clip:"), weights, classes=names, templates=prompts))
            return heads[0]
        return heads[0].with_classes(names)

    budget = parse_numbers(eps, "eps")
    if len(budget) != 1:
        raise InputError(f"eps: expected one budget, got {len(budget)} ({eps})")
    with _progress_bar() as bar:
        tasks: dict[str, object] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(f"attacking {name}", total=total)
            bar.update(tasks[name], completed=done)

        result = run_zeroshot_suite(head_for, suite, datasets=_names(datasets) if datasets else None,
                                    specs=named_specs, limit=limit, eps=budget[0], attacks=_names(attacks),
                                    steps=steps, batch_size=batch_size, seed=seed, out=out, progress=progress)
    console.print(zeroshot_table(result, model))
    console.print(f"Wrote {out}/zeroshot.json and {out}/zeroshot.md")


@app.command()
def report(
    file: Annotated[Path, typer.Argument(help="A report.json written by advcal audit.")],
    html: Annotated[Path, typer.Option(help="Where to write the HTML report.")] = Path("report.html"),
    figures: Annotated[
        Path | None, typer.Option(help="Also write each figure as a PNG into this folder.")
    ] = None,
) -> None:
    """Re-render the HTML report (and figures) from a report.json."""
    from advcal.report import load_report, write_report

    with err_console.status("Drawing the report…"):
        path = write_report(load_report(file), html, figures)
    console.print(f"Wrote {path}")


DATA_HELP = ("Data spec: digits, fashion-mnist[:DIR], cifar10:DIR, cifar100:DIR, npz:PATH, folder:PATH, "
             "torchvision:NAME:ROOT; text: csv:PATH, jsonl:PATH, tweets.")
ATTACK_HELP = "Registered attack: pgd, apgd-ce, apgd-dlr, square, ..."
CLIP_RECIPES = ("ucat", "tecoa", "fare")
CLASSES_HELP = ("clip:ARCH models: a text file of class names, one per line, for the prompts "
                "(default: the data's class names).")
SPLIT_HELP = ("Split: train, calibration, test or all. Default: all of your own npz:/folder:/csv:/jsonl: "
              "file, test of a built-in dataset (digits: advcal's fixed stratified 20%, not "
              "scikit-learn's usual train_test_split; train on --split train).")
STEPS_HELP = "Attack steps (queries for square). Default: the attack's own (pgd 20, apgd 100, square 1000)."
EPS_HELP = "ε sweep in input units, fractions allowed: 2/255,4/255,8/255."


def _text_audit_inputs(
    models: list[str], weights: list[Path] | None, names: list[str] | None, data: str, *, split: str,
    limit: int | None,
    text_column: str, label_column: str, calibrator: list[Path] | None, ensemble: bool, calibrate: bool,
) -> tuple[dict, object, object]:
    """What ``advcal audit`` needs for text classifiers: name -> classifier (calibrated or
    ensembled as asked), the audited texts and, with ``calibrate`` (for --illusion or --fixes),
    at most ``limit`` texts of the calibration split to fit on."""
    from advcal._core.errors import ConfigError, InputError
    from advcal.models.provenance import unique_names
    from advcal.text.loading import load_text_data, load_text_model

    if weights and len(weights) != len(models):
        raise InputError(f"weights: give one --weights per --model ({len(models)}), got {len(weights)}")
    if calibrate and split in ("calibration", "all"):
        raise ConfigError(f"illusion, fixes: the audited split is {split!r}, so no separate calibration "
                          "split is left to fit on; audit the test split (--split test)")
    labels = unique_names(models, weights, names)
    classifiers = _calibrated({label: load_text_model(spec, weights=weights[i] if weights else None)
                               for i, (label, spec) in enumerate(zip(labels, models, strict=True))},
                              calibrator, ensemble)
    columns = {"text_column": text_column, "label_column": label_column}
    texts = load_text_data(data, split=split, limit=limit, **columns)
    calibration = load_text_data(data, split="calibration", limit=limit, **columns) if calibrate else None
    return classifiers, texts, calibration


def _progress_bar(disable: bool = False):  # -> rich.progress.Progress (imported lazily)
    """The commands' progress bar: on stderr, gone when the work is done."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err_console, transient=True, disable=disable)


def _audit_progress(bar, names, total: int):  # bar: rich.progress.Progress
    """One task per audited model on ``bar``, and the ``progress(name, done, total)`` callback
    that the audits call."""
    tasks = {name: bar.add_task(f"auditing {name}", total=total) for name in names}
    return lambda name, done, total: bar.update(tasks[name], completed=done, total=total)


def _show_and_save(result, out: Path, fail_on: str) -> None:  # result: advcal.audit.AuditResult
    """The audit's tables and verdicts in the terminal, then its files (report.html, report.json, ...)
    in ``out``; then exit status 1 if a verdict reaches ``fail_on``."""
    from advcal.report.console import audit_table, flags_table, verdict_lines

    console.print(audit_table(result))
    if any(entry.flags for entry in result.models):
        console.print(flags_table(result))
    for line in verdict_lines(result):
        console.print(line)
    with err_console.status("Drawing the report…"):
        paths = result.save(out)
    console.print(f"Wrote {paths['html']}, {paths['json']} and {paths['samples']}")
    if result.fails(fail_on):
        err_console.print(f"advcal: a verdict reaches --fail-on {fail_on}: exit status 1", markup=False)
        raise typer.Exit(1)


def _load_models(specs: list[str], weights: list[Path] | None, normalize: str | None,
                 classes: list[str], names: list[str] | None = None) -> dict:
    """Name -> model for each spec, with its weights (one per spec) and normalisation; ``clip:ARCH``
    specs become zero-shot classifiers over ``classes``. Names are ``names`` or short unique ones
    (:func:`advcal.models.provenance.unique_names`)."""
    from advcal._core.errors import ConfigError, InputError
    from advcal.models import load_model, parse_normalize
    from advcal.models.provenance import unique_names

    if weights and len(weights) != len(specs):
        raise InputError(f"weights: give one --weights per --model ({len(specs)}), got {len(weights)}")
    labels = unique_names(specs, weights, names)  # checked before anything loads
    mean_std = parse_normalize(normalize) if normalize else None
    models = {}
    for i, (label, spec) in enumerate(zip(labels, specs, strict=True)):
        weight = weights[i] if weights else None
        if not spec.startswith("clip:"):
            models[label] = load_model(spec, weight, mean_std)
            continue
        from advcal.clip import load_clip

        if mean_std is not None:
            raise ConfigError("normalize: a CLIP model normalises its inputs itself; leave out --normalize")
        models[label] = load_clip(spec.removeprefix("clip:"), weight, classes=classes)
    return models


def _class_names(classes: Path | None, data: object) -> list[str]:
    """The class names a zero-shot model is given: ``--classes FILE`` or the data's own."""
    if classes is not None:
        from advcal.clip import read_class_names

        return read_class_names(classes)
    return [name.replace("_", " ") for name in data.classes]


def _calibrated(models: dict, calibrators: list[Path] | None, ensemble: bool) -> dict:
    """Each model wrapped by its calibrator (one per model, in order), renamed after it; then,
    with ``ensemble``, all of them as one ensemble (probabilities averaged)."""
    from advcal._core.errors import InputError
    from advcal.calibration import load_calibrator
    from advcal.models import Ensemble

    if calibrators:
        if len(calibrators) != len(models):
            raise InputError(
                f"calibrator: give one --calibrator per --model ({len(models)}), got {len(calibrators)}")
        wrapped = {}
        for (name, net), folder in zip(models.items(), calibrators, strict=True):
            fitted = load_calibrator(folder)
            wrapped[f"{name} + {fitted.kind} ({folder.name})"] = fitted.wrap(net)
        models = wrapped
    if ensemble:
        models = {"ensemble(" + " + ".join(models) + ")": Ensemble(list(models.values()))}
    return models


def _attack_params(attack: str, steps: int | None) -> dict[str, int]:
    return {} if steps is None else {("queries" if attack == "square" else "steps"): steps}


def entry_point() -> None:
    """The ``advcal`` console script and ``python -m advcal``: :func:`main`, in a process whose
    allocator first learns to keep freed memory (:func:`advcal._core.allocator.keep_freed_memory`)."""
    keep_freed_memory()
    main()


def main(argv: list[str] | None = None) -> None:
    """The command line on ``argv`` (default: the process's arguments); exits with its status."""
    # Hugging Face's "Loading weights" bars would interleave with advcal's own progress and its
    # one-line errors: the command turns them off unless the user set the variable (transformers
    # reads it when imported; if it already was, as when main is called in-process, tell it).
    if os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1") == "1" and "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    try:
        code = app(args=argv, prog_name="advcal", standalone_mode=False)
    except AdvcalError as error:
        err_console.print(f"advcal: error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except _USAGE_ERROR as error:
        if not error.format_message():  # "no arguments: show help", already printed
            sys.exit(error.exit_code)
        err_console.print(
            f"advcal: error: {error.format_message()}", markup=False, highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("advcal: interrupted", markup=False)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
