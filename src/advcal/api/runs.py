"""The ``advcal`` commands as library functions: each takes its config (:mod:`advcal.configs`),
loads what the specs name, runs the analysis and returns its result; the CLI only shows it.

``progress(label, done, total)`` is called as work advances (``total`` None: no count known).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from advcal._core.atomic import write_bytes_atomic, write_json_atomic
from advcal._core.errors import ConfigError, InputError
from advcal._core.validation import check_choice, parse_numbers
from advcal.analyses.adversarial_sets import make_adversarial_set
from advcal.analyses.audit import AuditResult
from advcal.analyses.audit.pipeline import default_epsilons
from advcal.analyses.fixes import FixesReport, evaluate_fixes
from advcal.analyses.illusion import IllusionReport, check_illusion, illusion_fails
from advcal.analyses.text_fixes import evaluate_text_fixes
from advcal.analyses.text_illusion import check_text_illusion
from advcal.analyses.zeroshot import SuiteResult, run_zeroshot_suite
from advcal.api.audit import audit
from advcal.api.specs import (
    as_option,
    attack_params,
    calibrated,
    class_names,
    load_models,
    load_one_model,
    one_budget,
    refuse_for_text,
    split_names,
    text_attack,
)
from advcal.configs import (
    LISTS,
    AttackConfig,
    AuditConfig,
    CalibrateConfig,
    IllusionConfig,
    ListConfig,
    MetricsConfig,
    TrainConfig,
    ZeroshotConfig,
    check_config,
)
from advcal.data import AdversarialSet, default_split, load_data
from advcal.engine.distributed import joined
from advcal.engine.model_check import check_model_fits
from advcal.metrics import CalibrationReport
from advcal.results.verdict import check_fail_on
from advcal.text.loading import default_text_split, is_text_audit, load_text_data, load_text_model

Progress = Callable[[str, int, "int | None"], None]
DEFAULT_MODELS = ("digits-cnn", "digits-cnn-at")
TEXT_ILLUSION_BUDGET = 0.2  # the largest fraction of words changed when --eps is not given


def _quiet(label: str, done: int, total: int | None) -> None:
    """The progress callback that shows nothing."""


# Model specs that are forms, not names: listed after the built-in models.
MODEL_FORMS = (
    ("package.module:factory", "your own nn.Module, from a factory taking no arguments (--weights FILE)"),
    ("file.py:factory", "the same, from a Python file"),
    ("hf:DIR", "a local Hugging Face sequence classifier (text)"),
    ("clip:ARCH", "an open_clip model with --weights FILE, zero-shot over the data's class names"),
)


def run_list(config: ListConfig) -> list[tuple[str, str]]:
    """``advcal list``: (name, summary) of every registered name of one kind, in registration order."""
    what = check_choice(config.what, "what", LISTS)
    if what == "models":
        from advcal.models import BUILTIN_MODELS
        from advcal.text.reference import BUILTIN_TEXT_MODELS

        return [*BUILTIN_MODELS.summaries(), *BUILTIN_TEXT_MODELS.summaries(), *MODEL_FORMS]
    if what == "attacks":
        from advcal.attacks import ATTACKS as registry
    elif what == "calibrators":
        from advcal.calibration import CALIBRATORS as registry
    elif what == "data":
        from advcal.data import KINDS as registry
    elif what == "recipes":
        from advcal.training import RECIPES as registry
    else:
        from advcal.text.attack_table import TEXT_ATTACKS as registry
    return registry.summaries()


def run_metrics(config: MetricsConfig) -> CalibrationReport:
    """``advcal metrics``: the calibration report of saved scores and labels (and its JSON)."""
    check_config(config)
    import advcal
    from advcal.metrics import calibration_report
    from advcal.metrics.files import read_scores_file

    data = read_scores_file(config.file, config.scores_key)
    try:
        report = calibration_report(
            data.scores,
            data.labels,
            n_bins=config.n_bins,
            inputs=config.inputs or data.inputs,
            smooth=config.smooth,
            bootstrap=config.bootstrap,
            seed=config.seed,
            index=data.index,
        )
    except InputError as error:  # the arrays are the file's: say which file
        if str(error).startswith(("scores:", "labels:", "index:")):
            raise InputError(f"file: {config.file}: {error}") from None
        raise
    if config.json_path is not None:
        write_json_atomic(
            config.json_path,
            {"advcal_version": advcal.__version__, "source": str(config.file), **report.to_dict()},
        )
    return report


def run_audit(config: AuditConfig, progress: Progress = _quiet) -> AuditResult | None:
    """``advcal audit``: every model of ``config`` audited on its data over the ε sweep.

    Under torchrun every rank audits its part; rank 0 gets the result, the others None.
    """
    check_config(config)
    check_fail_on(config.fail_on)
    if is_text_audit(list(config.model), config.data):
        return _run_text_audit(config, progress)
    if config.adv_set is not None:
        if config.data is not None or config.limit is not None or config.split is not None:
            raise ConfigError(
                "adv-set: a stored set brings its own data; leave out --data, --split and --limit"
            )
        source = AdversarialSet(config.adv_set)
    else:
        data = config.data or "digits"
        source = load_data(data, split=config.split or default_split(data), limit=config.limit)
    models = load_models(
        config.model or DEFAULT_MODELS,
        config.weights,
        config.normalize,
        class_names(config.classes, source),
        config.name,
    )
    models = calibrated(models, config.calibrator, config.ensemble)
    epsilons = parse_numbers(config.eps, "eps") if config.eps else None
    with joined(config.device) as ranks:
        result = audit(
            models,
            source,
            epsilons,
            config.attack,
            attack_params(config.attack, config.steps),
            n_bins=config.bins,
            bootstrap=config.bootstrap,
            seed=config.seed,
            batch_size=config.batch_size,
            profile=config.profile,
            device=config.device,
            illusion=config.illusion,
            fixes=config.fixes,
            progress=_audit_progress(progress, ranks.rank),
        )
    return result if ranks.rank == 0 else None


def _run_text_audit(config: AuditConfig, progress: Progress) -> AuditResult | None:
    refuse_for_text(normalize=config.normalize, adv_set=config.adv_set, device=config.device != "cpu")
    split = config.split or default_text_split(config.data or "")
    calibrate = config.illusion or config.fixes
    if calibrate and split in ("calibration", "all"):
        raise ConfigError(
            f"illusion, fixes: the audited split is {split!r}, so no separate calibration "
            "split is left to fit on; audit the test split (--split test)"
        )
    specs = list(config.model)
    if config.weights and len(config.weights) != len(specs):
        raise InputError(f"weights: give one --weights per --model ({len(specs)}), got {len(config.weights)}")
    from advcal.models.provenance import unique_names

    labels = unique_names(specs, list(config.weights) or None, list(config.name) or None)
    classifiers = calibrated(
        {
            label: load_text_model(spec, weights=config.weights[i] if config.weights else None)
            for i, (label, spec) in enumerate(zip(labels, specs, strict=True))
        },
        config.calibrator,
        config.ensemble,
    )
    columns = {"text_column": config.text_column, "label_column": config.label_column}
    texts = load_text_data(config.data or "", split=split, limit=config.limit, **columns)
    calibration = (
        load_text_data(config.data or "", split="calibration", limit=config.limit, **columns)
        if calibrate
        else None
    )
    attack = text_attack(config.attack)
    if attack == "embedding-pgd":
        params: dict[str, object] = {} if config.steps is None else {"steps": config.steps}
    else:
        params = {"query_budget": config.queries}
    with joined("cpu") as ranks:
        result = audit(
            classifiers,
            texts,
            parse_numbers(config.eps, "eps") if config.eps else None,
            attack,
            params,
            n_bins=config.bins,
            bootstrap=config.bootstrap,
            seed=config.seed,
            batch_size=config.batch_size,
            profile=config.profile,
            illusion=config.illusion,
            fixes=config.fixes,
            calibration=calibration,
            progress=_audit_progress(progress, ranks.rank),
        )
    return result if ranks.rank == 0 else None


def _audit_progress(progress: Progress, rank: int) -> Callable[[str, int, int], None]:
    """The audits' ``progress(model, done, total)`` as labelled progress, on rank 0 only."""
    if rank != 0:
        return lambda name, done, total: None
    return lambda name, done, total: progress(f"auditing {name}", done, total)


def run_attack(config: AttackConfig, progress: Progress = _quiet) -> AdversarialSet | None:
    """``advcal attack``: the stored adversarial set of one model (resumed when ``out`` holds it).

    Under torchrun ranks attack shards in turn; rank 0 gets the set, the others None.
    """
    check_config(config)
    source = load_data(config.data, split=config.split or default_split(config.data), limit=config.limit)
    spec, net = load_one_model(config.model, config.weights, config.normalize, source)
    epsilons = parse_numbers(config.eps, "eps") if config.eps else default_epsilons(source)
    with joined(config.device) as ranks:
        lead = ranks.rank == 0
        stored = make_adversarial_set(
            net,
            source,
            epsilons,
            config.out,
            config.attack,
            attack_params(config.attack, config.steps),
            seed=config.seed,
            shard_size=config.shard_size,
            batch_size=config.batch_size,
            compression=None if config.compress == "none" else config.compress,
            model_spec=spec,
            device=config.device,
            progress=lambda done, total: lead and progress(f"attacking {spec}", done, total),
        )
    return stored if lead else None


def run_illusion(config: IllusionConfig, progress: Progress = _quiet) -> tuple[str, IllusionReport]:
    """``advcal illusion``: the model's name and the illusion checks' findings (and their JSON)."""
    check_config(config)
    illusion_fails("genuine", config.fail_on)  # checks --fail-on before any work
    budget = one_budget(config.eps) if config.eps else None
    if is_text_audit([config.model], config.data):
        net, spec = load_text_model(config.model), config.model
        columns = {"text_column": config.text_column, "label_column": config.label_column}
        test = load_text_data(config.data, split=config.split, limit=config.limit, **columns)
        with as_option("calibration_split", "split"):
            calibration = load_text_data(
                config.data, split=config.calibration_split, limit=config.limit, **columns
            )
        progress(f"checking {spec} for an illusion of robustness", 0, None)
        found = check_text_illusion(
            net,
            test,
            calibration,
            TEXT_ILLUSION_BUDGET if budget is None else budget,
            config.attack or "word",
            {"query_budget": config.queries},
            seed=config.seed,
            full=config.full,
        )
    else:
        test = load_data(config.data, split=config.split, limit=config.limit)
        spec, net = load_one_model(config.model, config.weights, config.normalize, test)
        with as_option("calibration_split", "split"):
            calibration = load_data(config.data, split=config.calibration_split, limit=config.limit)
        progress(f"checking {spec} for an illusion of robustness", 0, None)
        found = check_illusion(
            net,
            test,
            calibration,
            sorted(default_epsilons(test))[1] if budget is None else budget,
            seed=config.seed,
            batch_size=config.batch_size,
            full=config.full,
            attack=config.attack,
            **({} if config.steps is None else {"steps": config.steps}),
        )
    if config.json_path is not None:
        write_json_atomic(config.json_path, {"model": spec, **found.to_dict()})
    return spec, found


def run_calibrate(config: CalibrateConfig, progress: Progress = _quiet) -> tuple[str, FixesReport]:
    """``advcal calibrate``: the model's name and every fix scored clean and attacked; saves the
    fitted calibrators in ``out`` and the table as JSON when asked."""
    check_config(config)
    chosen = {"calibrators": split_names(config.calibrators), "fit_on": split_names(config.fit_on)}
    if is_text_audit([config.model], config.data):
        from advcal._core.validation import check_choice
        from advcal.text.attack_table import SCORE_ATTACKS, TEXT_ATTACKS

        if config.normalize:
            raise ConfigError("--normalize: not available for text models (they read texts, not pixels)")
        attack = text_attack(config.attack)
        check_choice(attack, "attack", SCORE_ATTACKS)
        columns = {"text_column": config.text_column, "label_column": config.label_column}
        test = load_text_data(config.data, split=config.split, limit=config.limit, **columns)
        with as_option("calibration_split", "split"):
            calibration = load_text_data(
                config.data, split=config.calibration_split, limit=config.limit, **columns
            )
        spec, net = config.model, load_text_model(config.model, weights=config.weights)
        default = TEXT_ATTACKS[attack].default_budgets
        budgets = parse_numbers(config.eps, "eps") if config.eps else list(default)
        progress(f"fitting and attacking calibrators of {spec}", 0, None)
        found = evaluate_text_fixes(
            net,
            calibration,
            test,
            budgets,
            attack=attack,
            attack_params={"query_budget": config.queries},
            seed=config.seed,
            **chosen,
        )
    else:
        test = load_data(config.data, split=config.split, limit=config.limit)
        spec, net = load_one_model(config.model, config.weights, config.normalize, test)
        with as_option("calibration_split", "split"):
            calibration = load_data(config.data, split=config.calibration_split, limit=config.limit)
        epsilons = parse_numbers(config.eps, "eps") if config.eps else default_epsilons(test)
        progress(f"fitting and attacking calibrators of {spec}", 0, None)
        found = evaluate_fixes(
            net,
            calibration,
            test,
            epsilons,
            attack=config.attack,
            attack_params=attack_params(config.attack, config.steps),
            seed=config.seed,
            batch_size=config.batch_size,
            **chosen,
        )
    for folder in [config.out] if config.out is not None else []:
        for fix in found.fixes:
            fix.fitted.save(folder / f"{fix.calibrator}-{fix.fit_on}")
        write_json_atomic(folder / "fixes.json", {"model": spec, **found.to_dict()})
    if config.json_path is not None:
        write_json_atomic(config.json_path, {"model": spec, **found.to_dict()})
    return spec, found


def run_train(config: TrainConfig, progress: Progress = _quiet):  # -> advcal.training.TrainingRun
    """``advcal train``: the trained run (log and checkpoints in ``out``), its model saved there as
    ``model.safetensors`` (a Hugging Face folder ``model/`` for an ``hf:`` text classifier)."""
    check_config(config)
    from safetensors.torch import save as safetensors_bytes

    from advcal.models import load_model, load_weights, new_model
    from advcal.models.state import unique_state_dict
    from advcal.training import CLIP_RECIPES, Recipe, train

    clip = config.recipe in CLIP_RECIPES
    eps, steps, alpha = ("1/255", 2, "1/255") if clip else ("0.1", 7, None)  # see TrainConfig
    step_size = config.alpha or alpha
    recipe = Recipe(
        config.recipe,
        eps=one_budget(config.eps or eps),
        steps=steps if config.steps is None else config.steps,
        alpha=one_budget(step_size, "alpha") if step_size else None,
        trades_beta=config.trades_beta,
        train_temperature=config.train_temperature,
        gradnorm=config.gradnorm,
        freeze_bn_last=config.freeze_bn_last,
        pre_head_temperature=config.pre_head_temperature,
        eps_warmup=config.eps_warmup,
        head_only=config.head_only,
        kl_weight=config.kl_weight,
        dirichlet_tau=config.dirichlet_tau,
        seed=config.seed,
    )
    if is_text_audit([config.model], config.data):
        columns = {"text_column": config.text_column, "label_column": config.label_column}
        net = load_text_model(config.model, weights=config.weights)
        train_data = load_text_data(config.data, split=config.split, **columns)
        with as_option("val_split", "split"):
            validation = load_text_data(config.data, split=config.val_split, limit=config.val_limit,
                                        **columns)
        with as_option("frozen_from", "model"):
            reference = load_text_model(config.frozen_from) if config.frozen_from else None
    else:
        train_data = load_data(config.data, split=config.split)
        with as_option("val_split", "split"):
            validation = load_data(config.data, split=config.val_split, limit=config.val_limit)
        if config.model.startswith("clip:"):  # fine-tuned from its pretrained weights
            (net,) = load_models(
                [config.model],
                [config.weights] if config.weights else (),
                None,
                class_names(config.classes, train_data),
            ).values()
        else:
            from advcal._core.rng import torch_seeded

            with torch_seeded(config.seed):  # the initial weights come from the seed alone
                net = new_model(config.model)
            if config.weights is not None:  # or from a checkpoint, to fine-tune
                load_weights(net, config.weights)
        with as_option("frozen_from", "model"):
            reference = load_model(config.frozen_from) if config.frozen_from else None
        # before anything is written: the model takes the data, and has a gradient to train on
        check_model_fits(config.model, net, train_data, config.batch_size, needs_gradient=True)
    label = f"training {config.model} ({config.recipe})"
    warmup = 1.0 if clip and config.epochs > 1 else 0.0
    run = train(
        net,
        train_data,
        validation,
        recipe,
        epochs=config.epochs,
        out=config.out,
        batch_size=config.batch_size,
        lr=config.lr,
        optimizer=config.optimizer or ("sgd" if clip else "adam"),
        schedule=config.schedule or ("cosine" if clip else "constant"),
        warmup_epochs=warmup if config.warmup_epochs is None else config.warmup_epochs,
        frozen_from=reference,
        resume=config.resume,
        on_epoch=lambda row: progress(label, row["epoch"] + 1, config.epochs),
    )
    if config.model.startswith("hf:"):  # a Hugging Face folder in, a Hugging Face folder out
        run.model.save_pretrained(Path(config.out) / "model")
    else:  # atomically: a kill mid-write must not leave a model file that looks whole
        weights = safetensors_bytes(unique_state_dict(run.model))
        write_bytes_atomic(Path(config.out) / "model.safetensors", weights)
    return run


def run_zeroshot(config: ZeroshotConfig, progress: Progress = _quiet) -> SuiteResult:
    """``advcal zeroshot``: the suite over the datasets found, results (resumed) in ``out``."""
    check_config(config)
    from advcal.clip import load_clip

    if not config.model.startswith("clip:"):
        raise ConfigError(f"model: expected clip:ARCH (an open_clip architecture), got {config.model!r}")
    named_specs = {}
    for entry in config.spec:
        name, sep, value = entry.partition("=")
        if not sep or not name or not value:
            raise InputError(f"spec: expected NAME=DATA_SPEC, got {entry!r}")
        named_specs[name] = value
    prompts = None
    if config.templates is not None:
        expected = "expected a UTF-8 text file of prompt templates, one per line, {} for the class name"
        if not config.templates.is_file():
            raise InputError(f"templates: {config.templates} does not exist or is not a file; {expected}")
        try:
            text = config.templates.read_text("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"templates: {config.templates} is not UTF-8 text; {expected}") from None
        prompts = [line.strip() for line in text.splitlines() if line.strip()]
        if not prompts:  # an empty list would fall back to the default template, unasked
            raise InputError(f"templates: {config.templates} holds no templates; {expected}")
    budget = one_budget(config.eps)
    heads = []

    def head_for(names: list[str]):  # the CLIP is loaded once, at the first dataset found
        if not heads:
            heads.append(
                load_clip(
                    config.model.removeprefix("clip:"), config.weights, classes=names, templates=prompts
                )
            )
            return heads[0]
        return heads[0].with_classes(names)

    return run_zeroshot_suite(
        head_for,
        config.suite,
        datasets=split_names(config.datasets) or None,
        specs=named_specs,
        limit=config.limit,
        eps=budget,
        attacks=split_names(config.attacks),
        steps=config.steps,
        batch_size=config.batch_size,
        seed=config.seed,
        out=config.out,
        progress=lambda name, done, total: progress(f"attacking {name}", done, total),
    )
