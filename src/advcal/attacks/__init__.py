"""Adversarial attacks for calibration audits: exact, deterministic, and cheap.

>>> from advcal.attacks import PGD
>>> result = PGD(eps=8/255, steps=20, seed=42)(model, x, y, index=idx)   # doctest: +SKIP
>>> sweep = PGD(eps=[2/255, 4/255, 8/255], steps=20)(model, x, y)         # doctest: +SKIP
"""

from advcal.attacks.base import Attack, AttackResult
from advcal.attacks.pgd import FGSM, PGD

__all__ = ["FGSM", "PGD", "Attack", "AttackResult"]
