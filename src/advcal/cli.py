"""The ``advcal`` command. Thin: it parses options and calls the library.

Errors a user can cause print one line on stderr and exit with status 2, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

import advcal
from advcal.errors import AdvcalError

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
    from advcal.atomic import write_json_atomic
    from advcal.console import metrics_table, reliability_table
    from advcal.metrics import calibration_report
    from advcal.metrics.files import read_scores_file

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


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``advcal`` console script."""
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
