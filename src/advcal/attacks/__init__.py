"""Adversarial attacks for calibration audits: exact, deterministic, and cheap.

>>> from advcal.attacks import PGD
>>> result = PGD(eps=8/255, steps=20, seed=42)(model, x, y, index=idx)   # doctest: +SKIP
>>> sweep = PGD(eps=[2/255, 4/255, 8/255], steps=20)(model, x, y)         # doctest: +SKIP

Layer (docs/architecture.md; lint-imports holds it): imports only from _core, data and models.
"""

from advcal.attacks.apgd import APGD
from advcal.attacks.autoattack import AutoAttack
from advcal.attacks.base import Attack, AttackResult
from advcal.attacks.confidence import ConfidenceAttack
from advcal.attacks.fab import FAB
from advcal.attacks.losses import get_loss
from advcal.attacks.pgd import FGSM, PGD
from advcal.attacks.registry import ATTACKS, available_attacks, get_attack, register_attack
from advcal.attacks.square import Square
from advcal.attacks.targeted import APGDT

register_attack("fgsm", FGSM)
register_attack("pgd", PGD)
register_attack("pgd-l2", PGD, "PGD in an L2 ball.", norm="l2")
register_attack("apgd", APGD)
register_attack("apgd-ce", APGD, "APGD on the cross-entropy loss.", loss="ce")
register_attack("apgd-dlr", APGD, "APGD on the DLR loss (scale-invariant: blind to temperature).", loss="dlr")
register_attack("apgd-t", APGDT)
register_attack("fab-t", FAB)
register_attack("autoattack", AutoAttack)
register_attack("autoattack-l2", AutoAttack, "The standard AutoAttack ensemble in an L2 ball.", norm="l2")
register_attack("square", Square)
register_attack("confidence", ConfidenceAttack)
register_attack("confidence-down", ConfidenceAttack,
                "Push confidence down on correct predictions, keeping them.", direction="down")
register_attack("confidence-up", ConfidenceAttack,
                "Push confidence up on wrong predictions, keeping them.", direction="up")

__all__ = [
    "APGD",
    "APGDT",
    "ATTACKS",
    "FAB",
    "FGSM",
    "PGD",
    "Attack",
    "AttackResult",
    "AutoAttack",
    "ConfidenceAttack",
    "Square",
    "available_attacks",
    "get_attack",
    "get_loss",
    "register_attack",
]
