"""The ``advcal`` command: a thin shell that builds a config (:mod:`advcal.configs`) from the
options and calls :mod:`advcal.api`.

Errors a user can cause print one line on stderr and exit with status 2, never a traceback.
Importing it loads neither torch nor scipy nor matplotlib: each command imports what it needs.
"""

from __future__ import annotations

import os
import sys

from advcal._core.allocator import keep_freed_memory
from advcal._core.errors import AdvcalError
from advcal.cli import commands  # noqa: F401  (defining the commands registers them on the app)
from advcal.cli.app import USAGE_ERROR, app, err_console


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
    except USAGE_ERROR as error:
        if not error.format_message():  # "no arguments: show help", already printed
            sys.exit(error.exit_code)
        err_console.print(
            f"advcal: error: {error.format_message()}", markup=False, highlight=False, soft_wrap=True
        )
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("advcal: interrupted", markup=False)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
