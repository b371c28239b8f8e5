"""AutoAttack (Croce & Hein, ICML 2020, arXiv 2003.01690): the standard ensemble, worst case per sample.

APGD-CE, APGD-T (targeted DLR, 9 targets), FAB-T (9 targets) and Square (5,000 queries), each
at 100 iterations, one restart, run in that order, every attack only on the samples all the
earlier ones left correctly classified. A sample is robust only if every attack fails on it.

The inputs the audit measures calibration on follow AutoAttack's rule: a broken sample gets the
adversarial input of the *first* attack that broke it (APGD's misclassified iterate, FAB's
minimal point, Square's first success); a sample no attack breaks gets APGD-CE's highest-loss
point (the lowest true-class confidence that attack found), so that its confidence is an
attacked one, not the clean one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from advcal._core.errors import ConfigError
from advcal._core.validation import check_choice, check_int
from advcal.attacks.apgd import APGD, _where
from advcal.attacks.base import Attack, Counter
from advcal.attacks.fab import FAB
from advcal.attacks.geometry import NORMS
from advcal.attacks.square import Square
from advcal.attacks.targeted import APGDT

# The components and their order in AutoAttack's "standard" version (Linf and L2).
COMPONENTS = ("apgd-ce", "apgd-t", "fab-t", "square")
SELECTION = ("first success (AutoAttack's rule); unbroken samples: APGD-CE's highest-loss point")


class AutoAttack(Attack):
    """The standard AutoAttack ensemble, in advcal's attack interface.

    Args:
        eps: budget (input units) or a list of budgets.
        norm: ``"linf"`` or ``"l2"``.
        steps: iterations of APGD-CE, APGD-T and FAB-T (AutoAttack: 100).
        target_classes: targets of APGD-T and FAB-T (AutoAttack: 9; fewer with fewer classes).
        queries: Square's query budget (AutoAttack: 5,000).
        components: a subset of ``apgd-ce, apgd-t, fab-t, square``, in that order — for
            experiments only; any subset is recorded in ``params`` and named ``autoattack-custom``.
        **common: ``seed`` (each component's per-sample randomness, keyed by ``(seed, index)``),
            ``precision``.

    Models with fewer than 4 classes run APGD-CE, FAB-T and Square (the targeted DLR needs 4
    classes; AutoAttack skips it there too). Under L2 every component runs its L2 version.

    Cost: the components' passes, each counted as batch passes while any sample is left.
    """

    name = "autoattack"

    def __init__(
        self,
        eps: float | Sequence[float] = 8 / 255,
        *,
        norm: str = "linf",
        steps: int = 100,
        target_classes: int = 9,
        queries: int = 5000,
        components: Sequence[str] = COMPONENTS,
        **common: object,
    ) -> None:
        for option in ("loss", "loss_temperature", "select"):
            if option in common:
                raise ConfigError(f"{option}: AutoAttack fixes each component's loss and selection; "
                                  f"leave out {option}")
        super().__init__(eps, **common)
        self.norm = check_choice(norm, "norm", NORMS)
        self.steps = check_int(steps, "steps", 1)
        self.target_classes = check_int(target_classes, "target_classes", 1)
        self.queries = check_int(queries, "queries", 1)
        chosen = [check_choice(c, "components", COMPONENTS) for c in components]
        if not chosen or chosen != [c for c in COMPONENTS if c in chosen]:
            raise ConfigError(f"components: expected a non-empty subset of {', '.join(COMPONENTS)} in that "
                              f"order, got {list(components)}")
        self.components = tuple(chosen)
        if self.components != COMPONENTS:
            self.name = "autoattack-custom"

    def _extra_params(self) -> dict[str, object]:
        return {"steps": self.steps, "target_classes": self.target_classes, "queries": self.queries,
                "components": list(self.components), "selection": SELECTION, "loss": "per component",
                "version": "standard" if self.components == COMPONENTS else "custom"}

    def component_attacks(self, n_classes: int, eps: float) -> list[tuple[str, Attack]]:
        """The components that apply to a model with ``n_classes`` outputs, configured at ``eps``."""
        common = {"seed": self.seed, "precision": self.precision}
        targets = min(self.target_classes, n_classes - 1)
        built: list[tuple[str, Attack]] = []
        for name in self.components:
            if name == "apgd-ce":
                attack: Attack = APGD(eps, self.steps, norm=self.norm, loss="ce",
                                      select="best", **common)
            elif name == "apgd-t":
                if n_classes < 4:
                    continue
                attack = APGDT(eps, self.steps, norm=self.norm, target_classes=targets,
                               **common)
            elif name == "fab-t":
                attack = FAB(eps, self.steps, norm=self.norm, target_classes=targets, **common)
            else:
                attack = Square(eps, self.queries, p_init=0.8, rescale_schedule=False, norm=self.norm,
                                **common)
            built.append((name, attack))
        return built

    def _attack(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor,
        eps: float, clean_logits: torch.Tensor, counter: Counter,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x_adv, logits = x.clone(), clean_logits.clone()
        fooled = clean_logits.argmax(1) != y
        for _, attack in self.component_attacks(clean_logits.shape[1], eps):
            todo = (~fooled).nonzero().flatten()
            if len(todo) == 0:
                break
            sub_index, sub_clean = index[todo.cpu()], clean_logits[todo]
            if isinstance(attack, APGD) and not isinstance(attack, APGDT):
                run = attack.runs(model, x[todo], y[todo], sub_index, eps, counter)
                broken = run.fooled
                # Unbroken samples keep APGD-CE's highest-loss point; broken ones its misclassified one.
                x_adv[todo] = _where(broken, run.fooled_x, run.x_adv)
                logits[todo] = _where(broken, run.fooled_logits, run.logits)
            else:
                found_x, found_logits = attack._attack(model, x[todo], y[todo], sub_index, eps, sub_clean,
                                                       counter)
                broken = found_logits.argmax(1) != y[todo]
                chosen = todo[broken]
                x_adv[chosen], logits[chosen] = found_x[broken], found_logits[broken]
            fooled[todo] = broken
        return x_adv, logits
