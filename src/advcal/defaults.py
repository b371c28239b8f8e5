"""The defaults of every analysis, written once: the Python API's keyword defaults and the
``advcal`` command's option defaults both read them, so the same call gives the same report.

An attack's own settings (PGD's 20 steps, APGD's 100, Square's 1000 queries) live on the attack
class; the command passes ``--steps`` on only when the user gives it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AuditDefaults:
    """What ``advcal.audit(...)`` and ``advcal audit`` do unless told otherwise."""

    attack: str = "pgd"
    n_bins: int = 15
    bootstrap: int = 200
    seed: int = 0
    batch_size: int = 256
    profile: str = "default"
    # Texts: the attack, texts per forward pass and adversarial examples kept per model.
    text_attack: str = "word"
    text_batch_size: int = 32
    examples: int = 5
    # Exit status 1 when a verdict reaches this level (``advcal audit --fail-on``).
    fail_on: str = "never"


AUDIT = AuditDefaults()
# ``advcal illusion --fail-on``: the illusion verdict that makes the command exit 1.
ILLUSION_FAIL_ON = "never"
