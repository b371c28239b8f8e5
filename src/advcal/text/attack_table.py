"""The text modality's attacks by name, and what each one's budget means.

A text audit sweeps one budget per attack: the fraction of words or characters changed, or
the L2 radius in embedding space. The audit, the illusion check and the fixes all read this
one table.
"""

from __future__ import annotations

from collections.abc import Mapping

from advcal.text.attacks import CharacterAttack, WordSubstitutionAttack
from advcal.text.embedding_pgd import EmbeddingPGD

TEXT_ATTACKS = {"word": WordSubstitutionAttack, "char": CharacterAttack, "embedding-pgd": EmbeddingPGD}
# What the budget of each attack is, and the sweep used when the user gives none.
BUDGET = {"word": "max_change_fraction", "char": "max_change_fraction", "embedding-pgd": "eps"}
# The attacks that read the model's scores: the ones an extreme temperature can blind.
SCORE_ATTACKS = ("word", "char")
DEFAULT_BUDGETS = {"word": (0.1, 0.2, 0.3), "char": (0.1, 0.2, 0.3), "embedding-pgd": (0.25, 0.5, 1.0)}


def attack_record(attack: str, params: Mapping[str, object]) -> dict[str, object]:
    """A sweep's attack as reports record it: the attack's settings without the one budget
    (the sweep holds the budgets), the attack's name, the method it runs and what its budget is."""
    return {**{k: v for k, v in params.items() if k not in (BUDGET[attack], "attack")}, "attack": attack,
            "method": params.get("attack", attack), "budget": BUDGET[attack]}
