"""What each ``advcal`` command asks for: a frozen config per command, whose fields are the
command's options, with their defaults and help written once.

The command line is built from these (each field is the option of the same name, its default
and its help), and :mod:`advcal.api` runs them; Python callers build the same objects, so the
command and the API cannot drift apart. Specs are the strings users type (``--model
digits-cnn``, ``--data npz:PATH``, ``--eps 2/255,4/255``); the API parses them.

Torch-free, so that ``advcal --help`` reads it, and a command checks its options
(:func:`check_config`), without loading anything heavy.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advcal._core.atomic import remove_stale_temporaries
from advcal._core.validation import check_int, check_output, check_seed
from advcal.defaults import AUDIT, ILLUSION_FAIL_ON


def option(default: Any, help: str, **how: object) -> Any:
    """A config field with its default and its help; ``how`` tells the CLI more: ``flag`` (its
    option's name when not the field's), ``argument`` (a positional argument), ``output``
    ("folder" or "file": checked writable before the command's work starts), ``minimum`` (the
    least an int option may be, checked before any work: :func:`check_config`)."""
    return field(default=default, metadata={"help": help, **how})


def check_config(config: object) -> None:
    """Every option of ``config`` in range and every output (the fields marked ``output``) a
    place that can be written, before any work starts: a bad ``--queries`` or ``--out`` fails at
    once, whether or not this run would use it, not after the attack.

    Ranges come from the fields' ``minimum`` (an int option, None allowed where it means
    "default") and from their name (every ``seed`` through :func:`check_seed`). Temporary files
    a killed run left in the outputs are removed (:func:`remove_stale_temporaries`)."""
    outputs = []
    for entry in dataclasses.fields(config):
        value = getattr(config, entry.name)
        if value is None:
            continue
        # named as the option is (--json for json_path)
        name = entry.metadata.get("flag", entry.name.replace("_", "-")).lstrip("-")
        if "minimum" in entry.metadata:
            check_int(value, name.replace("-", "_"), entry.metadata["minimum"])
        if entry.name == "seed":
            check_seed(value)
        if entry.metadata.get("output"):
            outputs.append((check_output(value, name, entry.metadata["output"]), entry.metadata["output"]))
    # A run killed mid-write left .NAME.XXXXXXXX.tmp beside its outputs: garbage, removed now
    # that the options are valid. Under torchrun rank 0 alone writes, so it alone cleans (another
    # rank, started later, could otherwise remove a file rank 0 is writing).
    if os.environ.get("RANK", "0") == "0":
        for path, kind in outputs:
            if kind == "folder":
                remove_stale_temporaries(path)
            else:
                remove_stale_temporaries(path.parent, path.name)


def required(help: str, **how: object) -> Any:
    """A config field the caller must give."""
    return field(metadata={"help": help, **how})


MODEL = "Model spec: a built-in name, package.module:factory or file.py:factory."
WEIGHTS = "Weights (.safetensors or a .pt state dict)."
NORMALIZE = "MEAN,STD (or per-channel means then stds) the models expect."
DATA = ("Data spec: digits, fashion-mnist[:DIR], cifar10:DIR, cifar100:DIR, npz:PATH, folder:PATH, "
        "torchvision:NAME:ROOT; text: csv:PATH, jsonl:PATH, tweets.")
SPLIT = ("Split: train, calibration, test or all. Default: all of your own npz:/folder:/csv:/jsonl: file, "
         "test of a built-in dataset (digits: advcal's fixed stratified 20%, not scikit-learn's usual "
         "train_test_split; train on --split train).")
TEST_SPLIT = "Held-out split the figures are measured on."
CALIBRATION_SPLIT = "Clean split the calibrators (and the cal temperature) are fitted on."
LIMIT = "At most N samples (of each split; stratified)."
EPS = "ε sweep in input units, fractions allowed: 2/255,4/255,8/255. Default: suited to the data."
ATTACK = "Registered attack: pgd, apgd-ce, apgd-dlr, square, autoattack, ..."
STEPS = "Attack steps (queries for square). Default: the attack's own (pgd 20, apgd 100, square 1000)."
SEED = "Seed of every random draw (attack starts, bootstrap, initialisation)."
BATCH = "Samples per forward pass."
DEVICE = "cpu, cuda, cuda:N, mps or auto."
CLASSES = "clip:ARCH models: a file of class names, one per line (default: the data's class names)."
TEXT_COLUMN, LABEL_COLUMN, QUERIES = "Text data: the column holding the texts.", \
    "Text data: the column holding the labels.", "Text attacks: queries per text (default 2000)."
FAIL_ON = "Exit with status 1, after writing every output, when a verdict reaches this:"


LISTS = ("attacks", "models", "calibrators", "data", "recipes", "text-attacks")


@dataclass(frozen=True)
class ListConfig:
    """``advcal list WHAT``: the names advcal knows, each with one line on what it is."""

    what: str = required("What to list: " + ", ".join(LISTS) + ".", argument=True)


@dataclass(frozen=True)
class MetricsConfig:
    """``advcal metrics FILE``: a calibration report from saved scores and labels."""

    file: Path = required("A .npz or .safetensors file of scores and labels.", argument=True)
    json_path: Path | None = option(None, "Also write the report as JSON here.", flag="--json", output="file")
    n_bins: int = option(15, "Confidence bins.", minimum=1)
    bootstrap: int = option(200, "Bootstrap replicates (0: no intervals).", minimum=0)
    seed: int = option(0, "Bootstrap seed.")
    smooth: bool = option(True, "Compute smooth ECE.")
    scores_key: str | None = option(None, "Array holding the scores (default: logits, probs or log_probs).")
    inputs: str | None = option(None, "What the scores are: logits, probs or log_probs (default: the key).")


@dataclass(frozen=True)
class AuditConfig:
    """``advcal audit``: calibration clean and under attack over an ε sweep, flags, verdicts."""

    model: tuple[str, ...] = option((), MODEL + " Repeatable. Default: digits-cnn and digits-cnn-at.")
    weights: tuple[Path, ...] = option((), "Weights per --model (.safetensors or a .pt state dict).")
    name: tuple[str, ...] = option((), "A name per --model (default: the model or factory name, then the "
                                       "weights file's stem where two would clash).")
    normalize: str | None = option(None, NORMALIZE)
    data: str | None = option(None, DATA + " Default: digits.")
    split: str | None = option(None, SPLIT)
    limit: int | None = option(None, "Audit at most N samples (stratified).", minimum=1)
    adv_set: Path | None = option(None, "Evaluate a stored adversarial set (made by advcal attack) instead "
                                        "of attacking; its data, ε and attack are used.")
    eps: str | None = option(None, EPS)
    attack: str = option(AUDIT.attack, ATTACK + " Text: word, char or embedding-pgd.")
    steps: int | None = option(None, STEPS, minimum=1)
    bins: int = option(AUDIT.n_bins, "Confidence bins.", minimum=1)
    seed: int = option(AUDIT.seed, "Seed of attack starts and bootstrap.")
    batch_size: int | None = option(None, BATCH + " Default: 256 images, 32 texts.", minimum=1)
    bootstrap: int = option(AUDIT.bootstrap, "Bootstrap replicates for intervals.", minimum=0)
    profile: str = option(AUDIT.profile, "Flag thresholds and so the verdict: default, strict or lenient.")
    fail_on: str = option(AUDIT.fail_on, FAIL_ON + " error (a fail), warning (a warn or a fail) or never.")
    device: str = option("cpu", DEVICE)
    illusion: bool = option(False, "Also check each model for an illusion of robustness (about 6 more "
                                   "attack runs).")
    fixes: bool = option(False, "Also score every post-hoc calibration fix clean and under attack.")
    calibrator: tuple[Path, ...] = option((), "A calibrator saved by advcal calibrate, per --model: audit "
                                              "the calibrated model.")
    ensemble: bool = option(False, "Audit the --model arguments as one ensemble (probabilities averaged).")
    text_column: str = option("text", TEXT_COLUMN)
    label_column: str = option("label", LABEL_COLUMN)
    queries: int = option(2000, QUERIES, minimum=1)
    classes: Path | None = option(None, CLASSES)
    out: Path = option(Path("advcal-report"),
                       "Output folder: report.html, report.json, samples.npz, figures/.", output="folder")


@dataclass(frozen=True)
class AttackConfig:
    """``advcal attack``: one attack, stored as a resumable adversarial set."""

    model: str = option("digits-cnn", MODEL)
    weights: Path | None = option(None, WEIGHTS)
    normalize: str | None = option(None, NORMALIZE)
    data: str = option("digits", DATA)
    split: str | None = option(None, SPLIT)
    limit: int | None = option(None, "Attack at most N samples (stratified).", minimum=1)
    eps: str | None = option(None, EPS)
    attack: str = option(AUDIT.attack, ATTACK)
    steps: int | None = option(None, STEPS, minimum=1)
    seed: int = option(AUDIT.seed, "Seed of the attack's per-sample randomness.")
    batch_size: int = option(AUDIT.batch_size, BATCH, minimum=1)
    shard_size: int = option(1024, "Samples per shard file (the unit of resumption).", minimum=1)
    compress: str = option("none", "Shard compression: none or zstd.")
    device: str = option("cpu", DEVICE)
    out: Path = option(Path("advcal-adv-set"), "The set's folder (resumed when it holds the same recipe).",
                       output="folder")


@dataclass(frozen=True)
class IllusionConfig:
    """``advcal illusion``: is a model's robustness genuine or an illusion of miscalibration?"""

    model: str = option("digits-cnn-cold", "Model spec (as served: any temperature is part of it).")
    weights: Path | None = option(None, WEIGHTS)
    normalize: str | None = option(None, NORMALIZE)
    data: str = option("digits", DATA)
    split: str = option("test", TEST_SPLIT)
    calibration_split: str = option("calibration", CALIBRATION_SPLIT)
    limit: int | None = option(None, LIMIT, minimum=1)
    eps: str | None = option(None, "The one budget (fractions allowed). Default: the middle of the data's "
                                   "audit sweep; texts 0.2, the largest fraction of words changed.")
    steps: int | None = option(None, "PGD and APGD iterations (default 20).", minimum=1)
    seed: int = option(AUDIT.seed, "Seed of every attack's per-sample randomness.")
    batch_size: int = option(AUDIT.batch_size, BATCH, minimum=1)
    full: bool = option(False, "Run every check, even when the cheap ones settle it.")
    attack: str | None = option(None, "Images: one more registered attack run as a check (e.g. autoattack). "
                                      "Text models: the score-based attack, word (default) or char.")
    text_column: str = option("text", TEXT_COLUMN)
    label_column: str = option("label", LABEL_COLUMN)
    queries: int = option(2000, QUERIES, minimum=1)
    json_path: Path | None = option(None, "Also write the findings as JSON.", flag="--json", output="file")
    fail_on: str = option(ILLUSION_FAIL_ON,
                          FAIL_ON + " illusion, suspect (a suspect or an illusion) or never.")


@dataclass(frozen=True)
class CalibrateConfig:
    """``advcal calibrate``: which post-hoc calibration fix survives attack."""

    model: str = option("digits-cnn", "Model spec (uncalibrated logits).")
    weights: Path | None = option(None, WEIGHTS)
    normalize: str | None = option(None, NORMALIZE)
    data: str = option("digits", DATA)
    split: str = option("test", "Split the fixes are scored on.")
    calibration_split: str = option("calibration", CALIBRATION_SPLIT)
    limit: int | None = option(None, LIMIT, minimum=1)
    eps: str | None = option(None, EPS + " Texts: fractions of words changed.")
    attack: str = option(AUDIT.attack, ATTACK + " Texts: word or char.")
    steps: int | None = option(None, STEPS, minimum=1)
    seed: int = option(AUDIT.seed, "Seed of the attacks' per-sample randomness.")
    batch_size: int = option(AUDIT.batch_size, BATCH, minimum=1)
    calibrators: str = option("temperature,vector,isotonic,histogram,adversarial-temperature",
                              "Comma-separated: temperature, vector, isotonic, histogram, "
                              "adversarial-temperature.")
    fit_on: str = option("clean,adversarial,mixed", "Comma-separated: clean, adversarial, mixed.")
    text_column: str = option("text", TEXT_COLUMN)
    label_column: str = option("label", LABEL_COLUMN)
    queries: int = option(2000, QUERIES, minimum=1)
    json_path: Path | None = option(None, "Also write the fixes table as JSON.", flag="--json", output="file")
    out: Path | None = option(None, "Save every fitted calibrator in OUT/<kind>-<fit_on>/ (audit with "
                                    "--calibrator).", output="folder")


@dataclass(frozen=True)
class TrainConfig:
    """``advcal train``: a training recipe, with calibration tracked every epoch.

    Unset fields take the recipe family's value: the CLIP recipes (ucat, tecoa, fare) train as
    UCAT does (PGD ε = 1/255, two steps of 1/255; SGD, cosine, one warm-up epoch), the others
    with ε = 0.1, seven steps of 2.5 ε / 7, Adam and a constant rate.
    """

    recipe: str = option("standard", "standard, pgd-at, trades, fgsm-rs; CLIP (--model clip:ARCH): ucat, "
                                     "tecoa, fare.")
    model: str = option("digits-cnn", "Architecture: a built-in name (fresh weights) or "
                                      "package.module:factory / file.py:factory; a text classifier to "
                                      "fine-tune: hf:DIR or tweets-minilm.")
    data: str = option("digits", DATA)
    split: str = option("train", "Training split.")
    val_split: str = option("calibration", "Split of the per-epoch validation subset.")
    val_limit: int = option(256, "Samples in the validation subset (stratified).", minimum=1)
    epochs: int = option(10, "Epochs.", minimum=1)
    batch_size: int = option(64, "Samples per step.", minimum=1)
    lr: float = option(3e-3, "Learning rate.")
    optimizer: str | None = option(None, "adam, or sgd (momentum 0.9). Default adam; CLIP recipes sgd.")
    schedule: str | None = option(None, "Learning rate: constant or cosine (to 0). Default constant; CLIP "
                                        "recipes cosine.")
    warmup_epochs: float | None = option(None, "Linear learning-rate warm-up, in epochs. Default 0; CLIP "
                                               "recipes 1 (when epochs > 1).")
    eps: str | None = option(None, "ε of the training (and tracking) attack, input units (default 0.1; "
                                   "CLIP: 1/255; texts: an L2 radius per token in embedding units).")
    steps: int | None = option(None, "Steps of the training attack (default 7; CLIP recipes 2).", minimum=1)
    alpha: str | None = option(None, "Step of the training attack (default 2.5 ε / steps; CLIP recipes "
                                     "1/255).")
    trades_beta: float = option(6.0, "TRADES' β.")
    train_temperature: float = option(1.0, "Divide logits by T in the training loss.")
    gradnorm: bool = option(False, "Scale the global gradient norm to 1 every step.")
    freeze_bn_last: float = option(0.0, "Freeze BatchNorm for this last fraction.")
    pre_head_temperature: bool = option(False, "A learnable temperature before the classification head.")
    eps_warmup: float = option(0.0, "Ramp ε up linearly over this first fraction.")
    head_only: bool = option(False, "Train only the last linear layer (a probe on a frozen encoder).")
    kl_weight: float | None = option(None, "ucat: λ of the Dirichlet KL (default 1e5 / "
                                           "exp(softplus(2 / τ′))).")
    dirichlet_tau: float = option(0.07, "ucat: τ′ of the Dirichlet concentrations.")
    weights: Path | None = option(None, "Starting weights to fine-tune (default: fresh ones; CLIP: the "
                                        "pretrained checkpoint).")
    classes: Path | None = option(None, CLASSES)
    text_column: str = option("text", TEXT_COLUMN)
    label_column: str = option("label", LABEL_COLUMN)
    seed: int = option(0, "Seed of initialisation, shuffling and attacks.")
    frozen_from: str | None = option(None, "Model spec the frozen validation set is crafted against "
                                           "(default: the untrained one).")
    resume: bool = option(False, "Continue the run in --out from its last checkpoint.")
    out: Path = option(Path("advcal-train"), "The run's folder.", output="folder")


@dataclass(frozen=True)
class ZeroshotConfig:
    """``advcal zeroshot``: clean and robust accuracy, ECE and H of a CLIP over many datasets."""

    model: str = required("clip:ARCH, an open_clip architecture (e.g. clip:ViT-B-32).")
    weights: Path | None = option(None, "The local CLIP checkpoint.")
    suite: Path | None = option(None, "Folder with one sub-folder per dataset (ROOT/cifar10/<class>/...).")
    datasets: str | None = option(None, "Comma-separated dataset names (default: the paper's 16).")
    spec: tuple[str, ...] = option((), "NAME=DATA_SPEC, repeatable: read NAME from any data spec (npz:, "
                                       "cifar10:DIR, ...).")
    templates: Path | None = option(None, "Prompt templates, one per line with {} for the class name.")
    eps: str = option("1/255", "L∞ budget in pixel units.")
    attacks: str = option("pgd,cw,autoattack", "Comma-separated: pgd, cw, autoattack.")
    steps: int = option(100, "Iterations of every attack.", minimum=1)
    limit: int | None = option(None, "At most N images per dataset (stratified).", minimum=1)
    batch_size: int = option(64, "Images per forward pass.", minimum=1)
    seed: int = option(0, "Seed of the attacks' random starts.")
    out: Path = option(Path("advcal-zeroshot"), "Results folder (per-dataset files are resumed).",
                       output="folder")
