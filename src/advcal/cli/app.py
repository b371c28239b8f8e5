"""The Typer app, its consoles, and what every command does alike: its options read from its
config (:mod:`advcal.configs`), a progress bar, an exit status."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, Field, fields
from typing import Annotated

import typer
from rich.console import Console

import advcal
from advcal.configs import check_config

app = typer.Typer(name="advcal", help="Can this classifier's confidence be trusted under adversarial attack?",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
# Typer re-exports click's BadParameter whether it vendors click or depends on it; its base
# ClickException is what every usage error raises when standalone mode is off.
USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
USAGE_ABORT = typer.Abort
console = Console()
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"advcal {advcal.__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version.")] = False) -> None:
    """advcal: calibration of classifiers on clean and adversarial inputs."""


def command(kind: type, name: str | None = None) -> Callable[[Callable], Callable]:
    """Register ``show(config)`` as the command whose options are the fields of the config
    ``kind``: each field's name, type, default and help. The command builds the config from
    the options given and hands it to ``show``; its help is ``show``'s docstring."""
    def register(show: Callable) -> Callable:
        hints = typing.get_type_hints(kind)
        parameters = [_parameter(field, hints[field.name]) for field in fields(kind)]
        repeatable = {field.name for field in fields(kind) if _repeatable(hints[field.name])}

        def run(**options: object) -> None:
            config = kind(**{key: tuple(value or ()) if key in repeatable else value
                             for key, value in options.items()})
            check_config(config)  # before the command imports torch: a bad option answers at once
            show(config)

        run.__signature__ = inspect.Signature(parameters)
        run.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
        run.__doc__, run.__name__ = show.__doc__, show.__name__
        app.command(name)(run)
        return show
    return register


def _repeatable(hint: object) -> bool:
    return typing.get_origin(hint) is tuple


def _parameter(field: Field, hint: object) -> inspect.Parameter:
    """The Typer parameter of one config field (a tuple field: a repeatable option)."""
    how = field.metadata
    default = inspect.Parameter.empty if field.default is MISSING else field.default
    if _repeatable(hint):
        hint, default = list[typing.get_args(hint)[0]] | None, None
    if how.get("argument"):
        info = typer.Argument(help=how["help"])
    else:
        info = typer.Option(*([how["flag"]] if "flag" in how else []), help=how["help"])
    return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[hint, info])


@contextmanager
def progress_shown() -> Iterator[Callable[[str, int, int | None], None]]:
    """A progress bar on stderr, gone when the work is done, and the ``progress(label, done,
    total)`` callback the API calls: one bar per label (``total`` None: a pulsing bar)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as bar:
        tasks: dict[str, object] = {}

        def progress(label: str, done: int, total: int | None) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done, total=total)

        yield progress


def exit_if(failed: bool, reason: str) -> None:
    """Exit with status 1 (after every output is written) when ``failed``, saying why."""
    if failed:
        err_console.print(f"advcal: {reason}: exit status 1", markup=False)
        raise typer.Exit(1)


def wrote(*paths: object) -> None:
    """Say which files were written (the ones not None)."""
    written = [str(path) for path in paths if path is not None]
    if written:
        console.print("Wrote " + ", ".join(written))
