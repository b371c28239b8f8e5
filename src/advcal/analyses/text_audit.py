"""The audit of text classifiers: the image audit's report, with text attacks in place of PGD.

A text attack's budget plays the part of ε: for the word and character attacks it is the
largest fraction of a text's words the attack may change, for embedding-space PGD the L2 radius
per token. Clean logits, then the attack at every budget, feed the same streaming statistics,
flags, paired tests and per-sample records as :func:`advcal.audit.audit`, so the report reads
the same; it adds example adversarial texts (original against perturbed, changed words marked).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence

import numpy as np
from torch import nn

import advcal
from advcal._core.devices import module_device
from advcal._core.errors import InputError
from advcal._core.validation import check_choice, check_int
from advcal.analyses.audit.flags import fix_flag, get_profile, illusion_flags
from advcal.analyses.audit.pipeline import model_audit
from advcal.analyses.audit.result import AuditResult
from advcal.defaults import AUDIT
from advcal.engine.distributed import World, all_gather_arrays, deal_out, rank_positions, world
from advcal.engine.passes import ProgressFn, stream
from advcal.engine.text_passes import TextAttacks
from advcal.metrics.stats import check_stats_memory
from advcal.text.attack_table import SCORE_ATTACKS, TEXT_ATTACKS, attack_record
from advcal.text.data import TextDataset
from advcal.text.models import TextClassifier


def audit_text(
    models: nn.Module | Mapping[str, nn.Module],
    data: TextDataset,
    budgets: Sequence[float] | None = None,
    attack: str = AUDIT.text_attack,
    attack_params: Mapping[str, object] | None = None,
    *,
    n_bins: int = AUDIT.n_bins,
    bootstrap: int = AUDIT.bootstrap,
    seed: int = AUDIT.seed,
    batch_size: int = AUDIT.text_batch_size,
    profile: str = AUDIT.profile,
    progress: ProgressFn | None = None,
    examples: int = AUDIT.examples,
    illusion: bool = False,
    fixes: bool = False,
    calibration: TextDataset | None = None,
) -> AuditResult:
    """Audit each text classifier's calibration on ``data``, clean and under ``attack`` per budget.

    Args:
        models: a :class:`~advcal.text.TextClassifier`, or name -> classifier. For the word and
            char attacks any ``nn.Module`` mapping a list of texts to logits will do (a
            classifier wrapped by a calibrator, an ensemble); embedding PGD needs a TextClassifier.
        data: the texts and labels (:func:`advcal.text.parse_text_source`).
        budgets: the sweep (the report's "ε"): fractions of words changed for ``word`` and
            ``char``, the per-token L2 radius for ``embedding-pgd`` (default: the attack's
            ``default_budgets``).
        attack: ``word`` (PWWS-style synonym substitution), ``char`` (DeepWordBug-style
            character edits) or ``embedding-pgd``.
        attack_params: further settings of the attack (``query_budget``, ``steps``, ...).
        n_bins, bootstrap, seed, profile, progress: as in :func:`advcal.audit.audit`.
        batch_size: texts per batch (per forward pass of the clean texts).
        examples: how many successful adversarial texts per model to keep for the report.
        illusion: also ask, per model, whether its robustness is genuine or an illusion made by
            miscalibration (:func:`advcal.check_text_illusion` at the middle budget, with
            the same attack settings); needs a score-based attack (``word`` or ``char``).
        fixes: also fit every post-hoc calibrator on ``calibration`` and score it clean and
            under attack (:func:`advcal.evaluate_text_fixes`: the "fixes" table); needs a
            score-based attack too.
        calibration: the clean texts the illusion check fits its temperature on and searches
            ``opt`` on, and the fixes are fitted on (required with ``illusion`` or ``fixes``;
            keep them apart from ``data``).

    Under torchrun each rank audits whole batches and the statistics, per-sample records,
    example texts and query counts are gathered, so the result is that of one process, as in the
    image audit. The illusion check and the fixes attack the whole data: each model's run on
    one rank (model ``k`` on rank ``k mod size``) and every rank receives them.
    """
    if isinstance(models, nn.Module):
        models = {"text-classifier": models}
    if not models:
        raise InputError("models: expected at least one text classifier")
    check_choice(attack, "attack", tuple(TEXT_ATTACKS))
    # The score-based attacks only call the model on texts (a calibrated or ensembled classifier
    # will do); embedding PGD needs the embedding layer of a TextClassifier.
    wanted = TextClassifier if attack == "embedding-pgd" else nn.Module
    for name, model in models.items():
        if not isinstance(model, wanted):
            expected = "an advcal.text.TextClassifier" if attack == "embedding-pgd" else "a torch.nn.Module"
            raise InputError(f"models[{name!r}]: expected {expected} for the {attack} attack, "
                             f"got {type(model).__name__}")
    check_int(batch_size, "batch_size", 1)
    check_int(examples, "examples", 0)
    check_int(bootstrap, "bootstrap", 0)
    check_stats_memory(check_int(n_bins, "n_bins", 1), len(data.classes), bootstrap)
    limits = get_profile(profile)
    if illusion or fixes:
        _check_calibration_inputs(attack, calibration)
    budgets = list(TEXT_ATTACKS[attack].default_budgets) if budgets is None else [float(b) for b in budgets]
    labels = [f"{b:g}" for b in budgets]
    if not budgets or len(set(labels)) != len(labels):
        raise InputError(f"budgets: expected distinct values, got {', '.join(labels) or 'none'}")
    attackers = [TEXT_ATTACKS[attack].build(budget, **{"seed": seed, **dict(attack_params or {})})
                 for budget in budgets]
    record = attack_record(attack, attackers[0].params)
    # Under torchrun each rank audits whole batches, as the image audit does.
    ranks = world()
    blocks = rank_positions(math.ceil(len(data) / batch_size), ranks)
    positions = np.concatenate([np.arange(b * batch_size, min((b + 1) * batch_size, len(data)))
                                for b in blocks] or [np.zeros(0, dtype=np.int64)])
    part = data.subset(positions)
    results = []
    for name, model in models.items():
        modality = TextAttacks(part, attackers, budgets, batch_size, examples)
        streamed = stream(name, model, modality, budgets, n_bins, bootstrap, seed, progress, ranks)
        results.append(model_audit(name, streamed, budgets, attack, bootstrap, limits))
        results[-1].examples, results[-1].cost["queries"] = _gathered_examples(
            modality.examples, modality.queries, examples, data, ranks)
    if illusion or fixes:
        def checks(model: nn.Module) -> dict[str, object]:
            return _text_model_checks(model, data, calibration, budgets, attack, attack_params, seed,
                                      batch_size, n_bins, illusion, fixes)

        # Each model's checks attack the whole data: under several processes they are dealt
        # out to the ranks in turn, then every rank gets every model's (advcal.engine.distributed).
        for entry, checked in zip(results, deal_out(list(models.values()), checks, ranks), strict=True):
            entry.add_checks(checked)
    config = {
        "advcal_version": advcal.__version__,
        "data": {"spec": data.name, "split": data.split, "n_samples": len(data),
                 "fingerprint": text_fingerprint(data), "kind": "text", "classes": list(data.classes)},
        "epsilons": budgets,
        "attack": record,
        "n_bins": n_bins,
        "bootstrap": bootstrap,
        "seed": seed,
        "batch_size": batch_size,
        "profile": profile,
        "device": str(module_device(next(iter(models.values())))),
        "thresholds": vars(limits),
        "illusion": illusion,
        "fixes": fixes,
        "models": list(models),
    }
    return AuditResult(config=config, models=results)


def _text_model_checks(
    model: nn.Module, data: TextDataset, calibration: TextDataset | None, budgets: list[float], attack: str,
    attack_params: Mapping[str, object] | None, seed: int, batch_size: int, n_bins: int,
    illusion: bool, fixes: bool,
) -> dict[str, object]:
    """One text classifier's illusion check and fixes table, with their flags, JSON-ready."""
    found: dict[str, object] = {"illusion": None, "fixes": None, "flags": []}
    if illusion:
        # Imported here: advcal.analyses.text_illusion and .fixes build on this module's attack table.
        from advcal.analyses.text_illusion import check_text_illusion

        middle = sorted(budgets)[len(budgets) // 2]
        checked = check_text_illusion(model, data, calibration, middle, attack, attack_params, seed=seed,
                                      batch_size=batch_size)
        found["illusion"] = checked.to_dict()
        found["flags"] += [flag.as_dict() for flag in illusion_flags(checked)]
    if fixes:
        from advcal.analyses.text_fixes import evaluate_text_fixes

        table = evaluate_text_fixes(model, calibration, data, budgets, attack=attack,
                                    attack_params=attack_params, seed=seed, batch_size=batch_size,
                                    n_bins=n_bins)
        found["fixes"] = table.to_dict()
        found["flags"] += [fix_flag(flag).as_dict() for flag in table.flags]
    return found


def _check_calibration_inputs(attack: str, calibration: TextDataset | None) -> None:
    """The illusion check and the fixes read the model's scores, and fit on clean texts."""
    if attack not in SCORE_ATTACKS:
        raise InputError(f"illusion, fixes: for text these need a score-based attack (word or char), "
                         f"got {attack!r}")
    if not isinstance(calibration, TextDataset) or not len(calibration):
        raise InputError(f"calibration: the illusion check and the fixes need clean calibration texts "
                         f"(a TextDataset), got {calibration!r}")


def text_fingerprint(data: TextDataset) -> str:
    """sha256 of the texts, labels and row indices, in order: which samples were audited."""
    digest = hashlib.sha256()
    for text, label, row in zip(data.texts, data.labels, data.index, strict=True):
        encoded = text.encode("utf-8")
        digest.update(f"{len(encoded)}:{int(label)}:{int(row)}:".encode())
        digest.update(encoded)
    return digest.hexdigest()


def _gathered_examples(
    found: list[dict[str, object]], queries: int, wanted: int, data: TextDataset, ranks: World,
) -> tuple[list[dict[str, object]], int]:
    """Every rank's example texts and queries: the first ``wanted`` examples in ``data``'s order
    (each rank kept the first of its own batches, so these are one process's) and the total."""
    if ranks.size == 1:
        return found, queries
    # Examples are JSON (strings, numbers, lists): they travel as its UTF-8 bytes.
    parts = all_gather_arrays({"examples": np.frombuffer(json.dumps(found).encode("utf-8"), np.uint8),
                               "queries": np.array([queries], dtype=np.int64)}, ranks)
    position = {int(row): k for k, row in enumerate(data.index)}
    every = [example for part in parts for example in json.loads(part["examples"].tobytes().decode("utf-8"))]
    every.sort(key=lambda example: position[example["index"]])
    return every[:wanted], int(sum(int(part["queries"][0]) for part in parts))
