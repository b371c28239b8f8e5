"""The text modality's attacks by name, and what each one's budget means.

A text audit sweeps one budget per attack: the fraction of words or characters changed, or
the L2 radius in embedding space. The audit, the illusion check and the fixes all read this
one table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from advcal._core.registry import Registry, first_line
from advcal.text.attacks import CharacterAttack, WordSubstitutionAttack
from advcal.text.embedding_pgd import EmbeddingPGD


@dataclass(frozen=True)
class TextAttackKind:
    """A text attack: its class, the parameter its budget sets, the sweep used when the user
    gives none, and whether it reads the model's scores (an extreme temperature can blind those)."""

    make: Callable[..., object]
    budget: str
    default_budgets: tuple[float, ...]
    reads_scores: bool

    def build(self, budget: float, **params: object) -> object:
        """The attack at ``budget`` with ``params``."""
        return self.make(**{self.budget: budget, **params})


TEXT_ATTACKS: Registry[TextAttackKind] = Registry("text attack")
for _name, _kind in (
    ("word", TextAttackKind(WordSubstitutionAttack, "max_change_fraction", (0.1, 0.2, 0.3), True)),
    ("char", TextAttackKind(CharacterAttack, "max_change_fraction", (0.1, 0.2, 0.3), True)),
    ("embedding-pgd", TextAttackKind(EmbeddingPGD, "eps", (0.25, 0.5, 1.0), False)),
):
    TEXT_ATTACKS.add(_name, _kind, first_line(_kind.make))
SCORE_ATTACKS = tuple(name for name, kind in TEXT_ATTACKS.items() if kind.reads_scores)


def attack_record(attack: str, params: Mapping[str, object]) -> dict[str, object]:
    """A sweep's attack as reports record it: the attack's settings without the one budget
    (the sweep holds the budgets), the attack's name, the method it runs and what its budget is."""
    budget = TEXT_ATTACKS[attack].budget
    return {**{k: v for k, v in params.items() if k not in (budget, "attack")}, "attack": attack,
            "method": params.get("attack", attack), "budget": budget}
