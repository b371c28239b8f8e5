"""The files of code a user handed advcal (the module of a model factory), so that an exception
raised inside them, wherever advcal was when it happened, is reported as the user's model's in
one line, not as a traceback through advcal. An exception that never passed through such code
is advcal's own, and keeps its traceback: that is what a bug report needs."""

from __future__ import annotations

import os
import traceback

from advcal._core.errors import first_line

_SPECS: dict[str, str] = {}  # the real path of a user's source file -> the spec that loaded it


def register_user_code(path: str | os.PathLike | None, spec: str) -> None:
    """Record that the source file ``path`` is the user's, loaded for the model ``spec``."""
    if path:
        _SPECS[os.path.realpath(path)] = spec


def blame_user_code(error: BaseException) -> str | None:
    """One line naming the user's model, the line of its code that raised and the message, when
    ``error`` (or what caused it) was raised through registered code; None otherwise."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        for frame in reversed(traceback.extract_tb(error.__traceback__)):
            spec = _SPECS.get(os.path.realpath(frame.filename))
            if spec is not None:
                reason = first_line(error)
                message = f": {reason}" if reason else ""
                return (f"model {spec}: its code raised {type(error).__name__}{message} "
                        f"({os.path.basename(frame.filename)}, line {frame.lineno}, in {frame.name}) "
                        "while advcal ran it, after it passed the first-batch check")
        error = error.__cause__ or error.__context__
    return None
