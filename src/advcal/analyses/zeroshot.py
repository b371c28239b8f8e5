"""The zero-shot robustness suite: one CLIP model, many datasets, clean and adversarial.

The protocol of TeCoA, FARE and UCAT (arXiv 2512.12997, Tables 1–2): for each dataset, a
zero-shot head over its class names; clean accuracy, and robust accuracy under PGD-L∞ with the
cross-entropy (``pgd``), PGD-L∞ with the Carlini–Wagner margin (``cw``) and the standard
AutoAttack ensemble (``autoattack``: APGD-CE, APGD-T, FAB-T and Square-5000, worst case per
image, :class:`advcal.attacks.AutoAttack`; the targeted DLR is skipped below 4 classes, as
AutoAttack does — the papers' rule for PCAM), all at ε = 1/255 by default; then the averages over the datasets
and the harmonic mean H = 2·clean·robust / (clean + robust). advcal adds what those tables omit:
ECE clean and under attack, and, for heads with a logit scale, UCAT's Dirichlet uncertainties
(:mod:`advcal.clip.dirichlet`) clean and under the strongest attack.

Datasets are read from local files only: ``ROOT/NAME/`` as a ``folder:`` source (one sub-folder
per class; a ``classes.txt`` there, one name per line, overrides the folder names), or any advcal
data spec given per name. A dataset that is not there is skipped with the reason, never a
crash. With ``out``, each finished dataset is written at once (atomically) and a rerun with the
same settings resumes after it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

import advcal
from advcal._core.atomic import write_bytes_atomic, write_json_atomic
from advcal._core.errors import ConfigError, InputError, MissingDependencyError
from advcal._core.validation import check_int
from advcal.attacks import PGD, Attack, AutoAttack
from advcal.clip.dirichlet import concentrations, dirichlet_uncertainty
from advcal.data import DataSource, load_data
from advcal.data.registry import parse_spec
from advcal.engine.passes import ImageAttack, collect
from advcal.metrics import calibration_report

# The paper's 16 datasets, in its tables' order: name -> display name.
SUITE_DATASETS = {
    "tinyimagenet": "TinyImageNet", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "stl10": "STL-10",
    "sun397": "SUN397", "food101": "Food101", "oxfordpets": "OxfordPets", "flowers102": "Flowers102",
    "dtd": "DTD", "eurosat": "EuroSAT", "fgvc-aircraft": "FGVC-Aircraft", "imagenet": "ImageNet",
    "caltech101": "Caltech101", "caltech256": "Caltech256", "stanfordcars": "StanfordCars", "pcam": "PCAM",
}
SUITE_ATTACKS = ("pgd", "cw", "autoattack")
RESULT_FILE, TABLE_FILE = "zeroshot.json", "zeroshot.md"

HeadFactory = Callable[[list[str]], nn.Module]
Progress = Callable[[str, int, int], None]


@dataclass
class SuiteResult:
    """Per-dataset rows, their averages, the skipped datasets and the settings (seed included)."""

    settings: dict[str, object]
    rows: list[dict[str, object]]
    average: dict[str, float]
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"settings": self.settings, "rows": self.rows, "average": self.average,
                "skipped": self.skipped}

    def to_json(self, path: str | Path) -> None:
        write_json_atomic(Path(path), self.to_dict())

    def to_markdown(self) -> str:
        """The paper's table with advcal's columns: accuracy per attack, ECE, H."""
        attacks = list(self.settings["attacks"])
        head = ["dataset", "n", "clean acc", *[f"{a} acc" for a in attacks], "clean ECE", "adv ECE", "H"]
        lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]

        def line(name: str, n: str, row: Mapping[str, object]) -> str:
            cells = [name, n, _pct(row["clean_accuracy"]), *[_pct(row[f"{a}_accuracy"]) for a in attacks],
                     f"{row['clean_ece']:.3f}", f"{row['adv_ece']:.3f}", _pct(row["h"])]
            return "| " + " | ".join(cells) + " |"

        lines += [line(SUITE_DATASETS.get(r["dataset"], r["dataset"]), str(r["n"]), r) for r in self.rows]
        if self.rows:
            lines.append(line(f"**average ({len(self.rows)})**", "", self.average))
        lines += [f"\nSkipped {s['dataset']}: {s['reason']}" for s in self.skipped]
        return "\n".join(lines) + "\n"


def _pct(value: object) -> str:
    return f"{100 * float(value):.2f}"


def harmonic_mean(clean: float, robust: float) -> float:
    """H = 2·clean·robust / (clean + robust) (0 when both are 0)."""
    return 0.0 if clean + robust == 0 else 2 * clean * robust / (clean + robust)


def run_zeroshot_suite(
    head_for: HeadFactory,
    root: str | Path | None = None,
    *,
    datasets: Sequence[str] | None = None,
    specs: Mapping[str, str] | None = None,
    limit: int | None = None,
    eps: float = 1 / 255,
    attacks: Sequence[str] = SUITE_ATTACKS,
    steps: int = 100,
    batch_size: int = 64,
    seed: int = 0,
    n_bins: int = 15,
    out: str | Path | None = None,
    progress: Progress | None = None,
) -> SuiteResult:
    """Zero-shot accuracy, robustness, calibration and uncertainty of a model on many datasets.

    Args:
        head_for: class names -> the classifier for them (images in [0, 1] -> logits), e.g.
            ``ZeroShotClassifier.with_classes``. The suite never needs to know it is CLIP.
        root: the folder holding one sub-folder per dataset (``ROOT/cifar10/...``).
        datasets: the names to run, in order (default: the paper's 16, :data:`SUITE_DATASETS`).
        specs: name -> any advcal data spec (``folder:``, ``npz:``, ``cifar10:DIR``,
            ``torchvision:NAME:ROOT``), overriding ``ROOT/NAME``; names may be new ones.
        limit: at most this many images per dataset (the first of a stratified order).
        eps: the L∞ budget in pixel units (the paper: 1/255).
        attacks: any of ``pgd``, ``cw``, ``autoattack``.
        steps: iterations of every attack (the paper: 100).
        batch_size, seed, n_bins: images per forward pass, the attacks' seed, ECE bins.
        out: a folder for per-dataset results (resumed), ``zeroshot.json`` and ``zeroshot.md``.
        progress: called with ``(dataset, images done, images)`` as batches finish.
    """
    names = list(datasets) if datasets is not None else list(SUITE_DATASETS) + [
        name for name in (specs or {}) if name not in SUITE_DATASETS]
    if not names:
        raise InputError("datasets: expected at least one dataset name, got none")
    unknown = [a for a in attacks if a not in SUITE_ATTACKS]
    if unknown or not attacks:
        raise InputError(f"attacks: expected some of {', '.join(SUITE_ATTACKS)}, got {list(attacks)!r}")
    if not 0 < eps < 1:
        raise InputError(f"eps: expected a budget in (0, 1) for [0, 1] images (paper: 1/255), got {eps!r}")
    check_int(steps, "steps", 1)
    check_int(batch_size, "batch_size", 1)
    if limit is not None:  # checked here: _load's own refusal would read as "dataset not found"
        check_int(limit, "limit", 1)
    settings = {"advcal_version": advcal.__version__, "eps": eps, "attacks": list(attacks), "steps": steps,
                "seed": seed, "n_bins": n_bins, "limit": limit}
    if root is not None and not Path(root).is_dir():
        raise InputError(f"suite: {root} is not a folder; expected one sub-folder per dataset "
                         "(ROOT/cifar10/...)")
    # Before any dataset is evaluated (and its result written): every spec the user typed must
    # parse, and every dataset the user named must be there.
    for name, spec in (specs or {}).items():
        try:
            parse_spec(spec)
        except (InputError, ConfigError) as error:
            raise InputError(f"spec: {name}={spec}: {error}") from None
    for name in names if datasets is not None else ():
        try:
            _spec_of(name, root, specs or {})
        except InputError as error:
            raise InputError(f"datasets: {name}: {error}") from None
    folder = Path(out) if out is not None else None
    rows, skipped = [], []
    for name in names:
        done = _finished(folder, name, settings)
        if done is not None:
            rows.append(done)
            continue
        try:
            data = _load(name, root, specs or {}, limit)
        except (InputError, MissingDependencyError, OSError) as error:
            if datasets is not None:  # the user named it: its absence is an error, not a skip
                raise InputError(f"datasets: {name}: {error}") from None
            skipped.append({"dataset": name, "reason": str(error)})
            continue
        head = head_for(_class_names(name, root, specs or {}, data))
        row = _evaluate(name, data, head, settings, batch_size, progress)
        rows.append(row)
        if folder is not None:
            write_json_atomic(folder / f"{name}.json", {"settings": settings, "row": row})
    if not rows:  # a table of nothing would read as a finished suite
        where = f"under {root}" if root is not None else "(no --suite folder and no --spec)"
        raise InputError(f"suite: none of the {len(names)} datasets was found {where}; expected ROOT/NAME/ "
                         "folders with one sub-folder per class, or --spec NAME=DATA_SPEC")
    result = SuiteResult(settings=settings, rows=rows, average=_average(rows, attacks), skipped=skipped)
    if folder is not None:
        result.to_json(folder / RESULT_FILE)
        write_bytes_atomic(folder / TABLE_FILE, result.to_markdown().encode("utf-8"))
    return result


def _finished(folder: Path | None, name: str, settings: dict[str, object]) -> dict[str, object] | None:
    """A dataset's stored row when ``folder`` holds it; refuses a row made with other settings."""
    if folder is None or not (folder / f"{name}.json").exists():
        return None
    path = folder / f"{name}.json"
    try:
        stored = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as error:
        stored, why = None, f"{type(error).__name__}: {error}"
    else:
        why = "it lacks settings or row"
    if not isinstance(stored, dict) or not {"settings", "row"} <= stored.keys():
        raise InputError(f"out: {path} is not a stored result of advcal zeroshot ({why}); delete it or "
                         "choose another folder")
    if stored["settings"] != settings:
        raise ConfigError(f"out: {folder} holds {name} results made with other settings "
                          f"({stored['settings']}); choose another folder or the same settings")
    return stored["row"]


def _spec_of(name: str, root: str | Path | None, specs: Mapping[str, str]) -> str:
    """The data spec dataset ``name`` is read from, or an InputError saying it is not there."""
    if name in specs:
        return specs[name]
    if root is not None and (Path(root) / name).is_dir():
        return f"folder:{Path(root) / name}"
    where = f"{Path(root) / name}" if root is not None else "no --suite folder"
    raise InputError(f"not found ({where}); give it as ROOT/{name}/ with one sub-folder per class")


def _load(name: str, root: str | Path | None, specs: Mapping[str, str], limit: int | None) -> DataSource:
    spec = _spec_of(name, root, specs)
    kind, _, _ = parse_spec(spec)
    # Held-out sets: a source with an official test set gives that; any other is read whole.
    return load_data(spec, split="test" if kind.official_test else "all", limit=limit)


def _class_names(name: str, root: str | Path | None, specs: Mapping[str, str], data: DataSource) -> list[str]:
    """The names the prompts use: ``classes.txt`` beside the data when present, else the data's own."""
    listed = Path(root) / name / "classes.txt" if root is not None and name not in specs else None
    if listed is not None and listed.is_file():
        from advcal.clip.loading import read_class_names

        names = read_class_names(listed)
        if len(names) != len(data.classes):
            raise InputError(f"classes: {listed} names {len(names)} classes, the data has "
                             f"{len(data.classes)}")
        return names
    return [c.replace("_", " ") for c in data.classes]


def _logits_under(model: nn.Module, data: DataSource, attack: str, settings: Mapping[str, object],
                  batch_size: int) -> tuple[torch.Tensor, list[str]]:
    """Adversarial logits of every image and what ran: for ``autoattack`` the worst case per image
    over its components (those that apply to this many classes)."""
    eps, steps, seed = settings["eps"], settings["steps"], settings["seed"]
    if attack == "pgd":
        run: Attack = PGD(eps=eps, steps=steps, seed=seed)
        ran = ["pgd-ce"]
    elif attack == "cw":
        run = PGD(eps=eps, steps=steps, seed=seed, loss="margin")
        ran = ["pgd-margin"]
    else:
        run = AutoAttack(eps=eps, steps=steps, seed=seed)
        ran = [name for name, _ in run.component_attacks(len(data.classes), eps)]
    return collect("", model, ImageAttack(data, run, batch_size)).adversarial_logits[0], ran


def _evaluate(name: str, data: DataSource, model: nn.Module, settings: Mapping[str, object], batch_size: int,
              progress: Progress | None) -> dict[str, object]:
    clean = collect(name, model, ImageAttack(data, None, batch_size)).clean_logits
    report = calibration_report(clean, data.y, n_bins=settings["n_bins"])
    row: dict[str, object] = {"dataset": name, "n": len(data), "classes": len(data.classes),
                              "clean_accuracy": float(report["accuracy"]), "clean_ece": float(report["ece"])}
    adversarial, correct_under_all = {}, clean.argmax(1) == data.y
    for i, attack in enumerate(settings["attacks"]):
        logits, ran = _logits_under(model, data, attack, settings, batch_size)
        found = calibration_report(logits, data.y, n_bins=settings["n_bins"])
        row[f"{attack}_accuracy"], row[f"{attack}_ece"] = float(found["accuracy"]), float(found["ece"])
        row[f"{attack}_ran"] = ran
        adversarial[attack] = logits
        correct_under_all &= logits.argmax(1) == data.y
        if progress is not None:
            progress(name, i + 1, len(settings["attacks"]))
    strongest = min(adversarial, key=lambda a: (row[f"{a}_accuracy"], -SUITE_ATTACKS.index(a)))
    row["worst_accuracy"] = float(correct_under_all.double().mean())
    row["strongest_attack"], row["adv_ece"] = strongest, row[f"{strongest}_ece"]
    robust = row["autoattack_accuracy"] if "autoattack" in adversarial else row["worst_accuracy"]
    row["h"] = harmonic_mean(row["clean_accuracy"], robust)
    scale = getattr(model, "logit_scale", None)
    if scale is not None:  # UCAT's Dirichlet uncertainties, clean and under the strongest attack
        for where, logits in (("clean", clean), ("adv", adversarial[strongest])):
            means = dirichlet_uncertainty(concentrations(logits, torch.as_tensor(scale).detach())).means()
            row.update({f"{where}_{k}_uncertainty": v for k, v in means.items() if k != "vacuity"})
    return row


def _average(rows: list[dict[str, object]], attacks: Sequence[str]) -> dict[str, float]:
    """Means over the datasets that ran; H of the mean clean and mean robust accuracy, as the paper."""
    if not rows:
        return {}
    keys = ["clean_accuracy", "clean_ece", "adv_ece", "worst_accuracy", *[f"{a}_accuracy" for a in attacks]]
    average = {k: sum(float(r[k]) for r in rows) / len(rows) for k in keys}
    robust = average["autoattack_accuracy"] if "autoattack" in attacks else average["worst_accuracy"]
    average["h"] = harmonic_mean(average["clean_accuracy"], robust)
    average["mean_h"] = sum(float(r["h"]) for r in rows) / len(rows)
    return average
