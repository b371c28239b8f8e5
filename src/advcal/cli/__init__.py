"""The ``advcal`` command: a thin shell that builds a config (:mod:`advcal.configs`) from the
options and calls :mod:`advcal.api`.

Errors a user can cause print one line on stderr and exit with status 2, never a traceback; a
fault (a dead rank, SIGTERM) prints one line and exits with status 3; ``--fail-on`` exits with
status 1 when a verdict reaches it (docs/errors.md).
Importing it loads neither torch nor scipy nor matplotlib: each command imports what it needs.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from advcal._core.allocator import keep_freed_memory
from advcal._core.errors import AdvcalError, FaultError
from advcal._core.user_code import blame_user_code
from advcal.cli import commands  # noqa: F401  (defining the commands registers them on the app)
from advcal.cli.app import USAGE_ABORT, USAGE_ERROR, app, err_console


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
    with sigterm_ends_the_command():
        _run(argv)


def _run(argv: list[str] | None) -> None:
    try:
        code = app(args=argv, prog_name="advcal", standalone_mode=False)
    except FaultError as error:
        _say(f"advcal: fault: {error}")
        sys.exit(3)
    except AdvcalError as error:
        _say(f"advcal: error: {error}")
        sys.exit(2)
    except USAGE_ABORT as error:  # Typer's answer to an EOFError anywhere in the command
        cause = error.__cause__
        if not isinstance(cause, EOFError):
            raise
        detail = f": {cause}" if str(cause) else ""
        _say(f"advcal: error: an input ended early (EOFError{detail}): a truncated file, or code "
             "that read from a closed stdin")
        sys.exit(2)
    except USAGE_ERROR as error:
        if not error.format_message():  # "no arguments: show help", already printed
            sys.exit(error.exit_code)
        _say(f"advcal: error: {error.format_message()}")
        sys.exit(2)
    except Exception as error:
        blamed = blame_user_code(error)
        if blamed is None:
            raise  # advcal's own bug: its traceback is what a bug report needs
        _say(f"advcal: error: {blamed}")
        sys.exit(2)
    except KeyboardInterrupt:
        _say("advcal: interrupted")
        sys.exit(130)
    if code == 130:  # Typer's answer to Ctrl-C, before advcal sees the KeyboardInterrupt
        _say("advcal: interrupted")
    sys.exit(code if isinstance(code, int) else 0)


def _say(line: str) -> None:
    err_console.print(line, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def sigterm_ends_the_command() -> Iterator[None]:
    """For the block, SIGTERM (``kill``, or torchrun stopping the other ranks when one has died)
    ends the command with one line and status 3 instead of silently; the process's own handler
    is back afterwards (``main`` may be called in-process, as the tests do).

    The handler writes the line and leaves at once (``os._exit``) rather than raising: an
    exception raised from a signal handler can land in a finaliser, where Python prints it and
    carries on. Leaving at once is safe because every file advcal writes is renamed into place
    whole, and the temporary files of a write cut short are removed by the next run.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers can only be set from the main thread (main() called in a worker)
        return

    def stop(signum: int, frame: object) -> None:
        under = " (by torchrun: another rank failed)" if "TORCHELASTIC_RUN_ID" in os.environ else ""
        line = (f"\nadvcal: fault: stopped by SIGTERM{under} before the work was complete; the files it "
                "wrote are whole, and a rerun resumes where the command can\n")
        os.write(2, line.encode("utf-8"))
        os._exit(3)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
