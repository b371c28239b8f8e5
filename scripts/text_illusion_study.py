"""The text reproduction of docs/illusion.md: the paper's Table 2 on the MiniLM tweet classifier.

    python scripts/text_illusion_study.py --threads 2        # everything: ~40 min on 2 CPU cores
    python scripts/text_illusion_study.py --parts table2 --attacks word --models cold --results /tmp/cold.json
    python scripts/text_illusion_study.py --merge /tmp/all.json /tmp/cold.json     # print merged tables

Models (all all-MiniLM-L6-v2 with a linear head on the binary tweet task, encoder frozen):
``baseline`` (the shipped ``tweets-minilm``), ``cold`` and ``hot`` (the same served at T = 1e-3
and 1e4: over- and under-confident), ``gradnorm`` (a head trained from zero through
``advcal.training.train`` with gradient normalisation under SGD), and for the sweep heads
trained from zero at training temperatures 1, 10 and 100. Attacks: the character-level
(DeepWordBug-style) and word-substitution (PWWS-style, WordNet) attacks, changing at most
``--budget`` of a tweet's words within ``--queries`` queries. For each model and attack, the
adversarial accuracy on the first ``--test-limit`` test tweets as served, after ``cal`` (the
attack through the temperature fitted by NLL on ``--cal-limit`` clean calibration tweets) and
after ``opt`` (the temperature minimising adversarial accuracy on ``--opt-limit`` calibration
tweets). Every (model, attack) result is kept in ``--results`` (written atomically after each),
so an interrupted run resumes. One process is the fastest way to run it all: its encoder cache
(:class:`SharedEncoderCache`) serves every model, attack and temperature.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import ClassVar

import torch

import advcal
from advcal._core.atomic import write_json_atomic
from advcal.analyses.illusion.search import optimise_temperature
from advcal.calibration import fit_temperature
from advcal.models.state import load_state, unique_state_dict
from advcal.text import load_text_data
from advcal.text.attack_table import TEXT_ATTACKS
from advcal.text.models import TextClassifier, minilm_classifier
from advcal.text.reference import CLASSES, tweets_minilm
from advcal.training import Recipe, train

SEED = 0
SERVED = {"baseline": 1.0, "cold": 1e-3, "hot": 1e4}
SWEEP = {"T=1": 1.0, "T=10": 10.0, "T=100": 100.0}
TRAINED = {"gradnorm": {"gradnorm": True},
           **{f"train {name}": {"train_temperature": t} for name, t in SWEEP.items()}}


def trained_head(name: str, folder: Path, train_limit: int, epochs: int) -> TextClassifier:
    """A MiniLM classifier whose head was trained from zero by ``advcal.training.train`` (cached)."""
    path = folder / f"{name.replace(' ', '-').replace('=', '')}.safetensors"
    model = minilm_classifier(labels=CLASSES)
    if path.exists():
        from safetensors.torch import load_file

        load_state(model, load_file(str(path)))
        return model
    with torch.no_grad():
        model.body.head.weight.zero_()
        model.body.head.bias.zero_()
    train_data = load_text_data("tweets", split="train", limit=train_limit)
    validation = load_text_data("tweets", split="calibration", limit=64)
    options = TRAINED[name]
    # gradnorm: SGD, whose steps keep the normalised length (Adam would undo the normalisation).
    # At training temperature T the head must grow T times larger for the same loss, and Adam's
    # steps do not grow with it: its learning rate is scaled by T, so every run gets as far.
    optimizer, lr = ("sgd", 0.05) if options.get("gradnorm") else ("adam",
                                                                    1e-2 * options["train_temperature"])
    with tempfile.TemporaryDirectory() as run_dir:
        run = train(model, train_data, validation, Recipe("standard", head_only=True, seed=SEED, **options),
                    epochs=epochs, out=run_dir, batch_size=64, lr=lr, optimizer=optimizer, val_eps=0.05,
                    val_steps=3, on_epoch=lambda row: print(f"  {name} epoch {row['epoch']}: "
                                                            f"loss {row['train_loss']:.4f}", flush=True))
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(unique_state_dict(run.model), str(path))
    return run.model


class SharedEncoderCache:
    """A study model whose sentence embeddings come from a cache shared by every model.

    All the study's models are one frozen MiniLM encoder with different heads and inference
    temperatures, and the attacks re-query the same texts across runs (served, ``cal``, each
    temperature ``opt`` tries, each head). Each distinct text is encoded once; the logits are
    this model's head on the cached embedding over its temperature, as ``TextClassifier`` computes
    them. The attacks still count every query against their budgets.
    """

    embeddings: ClassVar[dict[str, torch.Tensor]] = {}  # shared by every instance: one encoder

    def __init__(self, model: TextClassifier) -> None:
        self.model = model.eval()

    def __call__(self, texts: list[str]) -> torch.Tensor:
        missing = list(dict.fromkeys(t for t in texts if t not in self.embeddings))
        with torch.no_grad():
            for first in range(0, len(missing), 64):
                chunk = missing[first:first + 64]
                pooled = self.model.body.sentence_embedding(*self.model.embed(chunk))
                self.embeddings.update(zip(chunk, pooled, strict=True))
            pooled = torch.stack([self.embeddings[t] for t in texts])
            return self.model.body.head(pooled) / self.model.temperature


def adversarial_accuracy(model: SharedEncoderCache, data, attack: str, budget: float, queries: int,
                         loss_temperature: float = 1.0) -> float:
    made = TEXT_ATTACKS[attack].build(budget, seed=SEED, query_budget=queries,
                                      loss_temperature=loss_temperature)
    hits = 0
    for first in range(0, len(data), 32):
        texts, labels = data.texts[first:first + 32], torch.from_numpy(data.labels[first:first + 32])
        result = made(model, texts, labels, index=torch.from_numpy(data.index[first:first + 32]))
        hits += int((result.logits.argmax(1) == labels).sum())
    return hits / len(data)


def logits_of(model: SharedEncoderCache, texts: list[str]) -> torch.Tensor:
    return torch.cat([model(texts[i:i + 64]) for i in range(0, len(texts), 64)]).double()


def study(model: SharedEncoderCache, attack: str, args: argparse.Namespace,
          with_opt: bool) -> dict[str, object]:
    """Clean accuracy and ECE, then adversarial accuracy as served, after cal and (maybe) opt."""
    from advcal.metrics import calibration_report

    test = load_text_data("tweets", split="test", limit=args.test_limit)
    calibration = load_text_data("tweets", split="calibration", limit=args.cal_limit)
    clean = calibration_report(logits_of(model, test.texts), torch.from_numpy(test.labels))
    temperature = fit_temperature(logits_of(model, calibration.texts), torch.from_numpy(calibration.labels))
    row = {"clean_accuracy": float(clean["accuracy"]), "clean_ece": float(clean["ece"]),
           "served": adversarial_accuracy(model, test, attack, args.budget, args.queries),
           "cal_temperature": temperature,
           "cal": adversarial_accuracy(model, test, attack, args.budget, args.queries, temperature)}
    if with_opt:
        searched = calibration.subset(list(range(min(args.opt_limit, len(calibration)))))
        search = optimise_temperature(
            lambda t: adversarial_accuracy(model, searched, attack, args.budget, args.queries, t))
        row["opt_temperature"] = search.temperature
        row["opt"] = adversarial_accuracy(model, test, attack, args.budget, args.queries, search.temperature)
    return row


def markdown(results: dict[str, dict[str, object]]) -> str:
    lines = ["| model | attack | clean acc | clean ECE | adv acc (served) | after cal (T) | after opt (T) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for key, row in results.items():
        if key == "settings":
            continue
        model, attack = key.split(" / ")
        opt = f"{row['opt']:.3f} ({row['opt_temperature']:.3g})" if "opt" in row else "—"
        lines.append(f"| {model} | {attack} | {row['clean_accuracy']:.3f} | {row['clean_ece']:.3f} | "
                     f"{row['served']:.3f} | {row['cal']:.3f} ({row['cal_temperature']:.3g}) | {opt} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="train,table2,sweep")
    parser.add_argument("--attacks", default="char,word")
    parser.add_argument("--models", default="", help="only these models (comma-separated; default all)")
    parser.add_argument("--test-limit", type=int, default=200)
    parser.add_argument("--cal-limit", type=int, default=500)
    parser.add_argument("--opt-limit", type=int, default=60)
    parser.add_argument("--train-limit", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--budget", type=float, default=0.2, help="largest fraction of words changed")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--heads", type=Path, default=Path("study-heads"), help="folder of the trained heads")
    parser.add_argument("--results", type=Path, default=Path("text-illusion-study.json"))
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--merge", type=Path, nargs="*", help="print the merged table of these result files")
    args = parser.parse_args()
    if args.merge:
        merged = {}
        for path in args.merge:
            merged.update(json.loads(path.read_text()))
        print(markdown(merged))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    parts, attacks = args.parts.split(","), args.attacks.split(",")
    settings = {"advcal_version": advcal.__version__, "seed": SEED,
                **{k: str(v) for k, v in vars(args).items()}}
    results = json.loads(args.results.read_text()) if args.results.exists() else {"settings": settings}
    if "train" in parts:
        for name in TRAINED:
            trained_head(name, args.heads, args.train_limit, args.epochs)
    jobs = []
    if "table2" in parts:
        jobs += [(name, lambda t=t: tweets_minilm(temperature=t), True) for name, t in SERVED.items()]
        jobs.append(("gradnorm", lambda: trained_head("gradnorm", args.heads, args.train_limit, args.epochs),
                     True))
    if "sweep" in parts:
        jobs += [(f"train {name}", lambda n=name: trained_head(f"train {n}", args.heads, args.train_limit,
                                                               args.epochs), False) for name in SWEEP]
    chosen = [m for m in args.models.split(",") if m]
    for name, build, with_opt in jobs:
        if chosen and name not in chosen:
            continue
        for attack in attacks:
            key = f"{name} / {attack}"
            if key in results:
                continue
            print(f"{key} ...", flush=True)
            results[key] = study(SharedEncoderCache(build()), attack, args, with_opt)
            print(f"  {results[key]}", flush=True)
            write_json_atomic(args.results, results)
    print(markdown(results))


if __name__ == "__main__":
    main()
