"""The commands: each is the config it runs (options, defaults and help come from
:mod:`advcal.configs`), the :mod:`advcal.api` call, and how its result is shown."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from advcal.cli.app import app, command, console, err_console, exit_if, progress_shown, wrote
from advcal.configs import (
    AttackConfig,
    AuditConfig,
    CalibrateConfig,
    IllusionConfig,
    ListConfig,
    MetricsConfig,
    TrainConfig,
    ZeroshotConfig,
)


@command(ListConfig, "list")
def list_names(config: ListConfig) -> None:
    """What advcal knows by name: attacks, models, calibrators, data, recipes or text-attacks."""
    from rich.table import Table

    from advcal.api.runs import run_list

    table = Table(title=f"advcal {config.what}")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("what it is")
    for name, summary in run_list(config):
        table.add_row(name, summary)
    console.print(table)


@command(MetricsConfig)
def metrics(config: MetricsConfig) -> None:
    """A calibration report from saved scores and labels.

    The file holds the scores under "logits", "probs" or "log_probs" (the key says which)
    and the labels under "labels" or "y"; optionally sample indices under "index".
    """
    from advcal.api.runs import run_metrics
    from advcal.report.console import metrics_table, reliability_table

    with err_console.status("Computing calibration metrics…"):
        report = run_metrics(config)
    console.print(reliability_table(report))
    console.print(metrics_table(report, title=f"Calibration of {config.file.name}"))
    wrote(config.json_path)


@command(AuditConfig)
def audit(config: AuditConfig) -> None:
    """Audit calibration on clean and adversarial inputs over an ε sweep: red flags and a verdict.

    With no options: the shipped digits-cnn and digits-cnn-at on scikit-learn's digits (advcal's
    own fixed test split, 360 images; train your own digits models on --split train, as advcal
    train does, never on scikit-learn's usual train_test_split, which overlaps it). A user's own
    npz:, folder:, csv: or jsonl: file is audited whole unless --split says otherwise. Text
    classifiers (--model hf:DIR, --data csv:PATH / jsonl:PATH / tweets) are audited under the
    word, char or embedding-pgd attack (--attack), whose budgets take the place of ε (--eps).
    """
    from advcal.api.runs import run_audit
    from advcal.report.console import audit_table, flags_table, verdict_lines

    with progress_shown() as progress:
        result = run_audit(config, progress)
    if result is None:  # another rank of a torchrun job: rank 0 reports
        return
    console.print(audit_table(result))
    if any(entry.flags for entry in result.models):
        console.print(flags_table(result))
    for line in verdict_lines(result):
        console.print(line)
    with err_console.status("Drawing the report…"):
        paths = result.save(config.out)
    console.print(f"Wrote {paths['html']}, {paths['json']} and {paths['samples']}")
    exit_if(result.fails(config.fail_on), f"a verdict reaches --fail-on {config.fail_on}")


@command(AttackConfig, "attack")
def attack(config: AttackConfig) -> None:
    """Attack once with a fixed recipe and store the adversarial set (resumable; audit it with --adv-set)."""
    from advcal.api.runs import run_attack
    from advcal.report.console import adversarial_set_table

    with progress_shown() as progress:
        stored = run_attack(config, progress)
    if stored is not None:  # None: another rank of a torchrun job
        console.print(adversarial_set_table(stored))
        wrote(config.out)


@command(IllusionConfig)
def illusion(config: IllusionConfig) -> None:
    """Is the model's robustness genuine, or an illusion made by miscalibration?

    Text classifiers (--model hf:DIR or tweets-minilm, --data csv:/jsonl:/tweets) are checked with
    the score-based word or char attack; --eps is then the largest fraction of words changed.
    """
    from advcal.analyses.illusion import illusion_fails
    from advcal.api.runs import run_illusion
    from advcal.report.console import illusion_table

    with progress_shown() as progress:
        spec, found = run_illusion(config, progress)
    console.print(illusion_table(found, spec))
    wrote(config.json_path)
    exit_if(illusion_fails(found.verdict, config.fail_on),
            f"the verdict {found.verdict} reaches --fail-on {config.fail_on}")


@command(CalibrateConfig)
def calibrate(config: CalibrateConfig) -> None:
    """Which post-hoc calibration fix survives attack? Fit each, score it clean and attacked.

    Text classifiers (--model hf:DIR or tweets-minilm, --data csv:/jsonl:/tweets) are attacked by
    the score-based word or char attack (--attack); --eps is then the fractions of words changed.
    """
    from advcal.api.runs import run_calibrate
    from advcal.report.console import fixes_table

    with progress_shown() as progress:
        spec, found = run_calibrate(config, progress)
    console.print(fixes_table(found, spec))
    if config.out is not None:
        console.print(f"Wrote {len(found.fixes)} calibrators and fixes.json to {config.out}")
    wrote(config.json_path)


@command(TrainConfig, "train")
def train(config: TrainConfig) -> None:
    """Train with a recipe, tracking calibration (clean, fresh attack, frozen set) every epoch.

    Text classifiers (--model hf:DIR or tweets-minilm, --data csv:PATH / jsonl:PATH / tweets) are
    fine-tuned from their weights; their adversarial recipes perturb the input embeddings, with
    --eps an L2 radius per token in embedding units.
    """
    from advcal.api.runs import run_train
    from advcal.report.console import training_table

    with progress_shown() as progress:
        run = run_train(config, progress)
    console.print(training_table(run.log, f"{config.model}, {config.recipe}"))
    out, hf = config.out, config.model.startswith("hf:")
    audit_it = f"hf:{out}/model" if hf else f"{config.model} --weights {out}/model.safetensors"
    console.print(f"Wrote {out}/{'model' if hf else 'model.safetensors'} (audit it with --model {audit_it}), "
                  "log.csv and checkpoints")


@command(ZeroshotConfig)
def zeroshot(config: ZeroshotConfig) -> None:
    """The zero-shot robustness suite: clean and robust accuracy, ECE and H over many datasets."""
    from advcal.api.runs import run_zeroshot
    from advcal.report.console import zeroshot_table

    with progress_shown() as progress:
        result = run_zeroshot(config, progress)
    console.print(zeroshot_table(result, config.model))
    console.print(f"Wrote {config.out}/zeroshot.json and {config.out}/zeroshot.md")


@app.command()
def report(file: Annotated[Path, typer.Argument(help="A report.json written by advcal audit.")],
           html: Annotated[Path, typer.Option(help="Where to write the HTML report.")] = Path("report.html"),
           figures: Annotated[Path | None, typer.Option(help="Also write each figure as a PNG here.")] = None,
           ) -> None:
    """Re-render the HTML report (and figures) from a report.json."""
    from advcal.report import load_report, write_report

    with err_console.status("Drawing the report…"):
        path = write_report(load_report(file), html, figures)
    wrote(path)
