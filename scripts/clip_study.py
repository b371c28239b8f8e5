"""The tiny-model reproduction of docs/clip.md: TeCoA, FARE and UCAT fine-tuning, then the suite.

    python scripts/clip_study.py [--epochs 4] [--eps 1/255] [--steps 10] [--lr 0.001] [--kl-weight 1e-9]

No CLIP weights can be downloaded here, and a randomly initialised text tower maps every prompt
to nearly the same embedding (cosines of 0.96-0.999 between the ten digit prompts), so zero-shot
classification is impossible with it. The stand-in for a pretrained CLIP is therefore the
``advcal-tiny`` open_clip architecture (seed 0) trained, both towers, to match images with their
prompts ("This is a photo of a {class}") on the training splits of two datasets: scikit-learn's
digits and ``--fashion-train`` Fashion-MNIST images (``--pretrain-epochs`` epochs). From it,
each adversarial recipe fine-tunes the image tower on digits alone for ``--epochs`` epochs, as
``advcal train --recipe R`` does (SGD with momentum at ``--lr``, cosine schedule after a 1-epoch warm-up,
PGD-L∞ ε = 1/255 with two steps of 1/255), the frozen reference being the pretrained model.
Every model then runs the zero-shot suite on the two test sets — digits (the fine-tuning task)
and ``--fashion-limit`` Fashion-MNIST images (a task the adversarial fine-tuning never saw, which
measures the zero-shot generalisation the paper cares about) — with PGD, CW and AutoAttack
(``--steps`` iterations). Prints the markdown table of docs/clip.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from advcal._core.validation import parse_numbers
from advcal.analyses.zeroshot import run_zeroshot_suite
from advcal.clip import ZeroShotClassifier, tiny_clip
from advcal.data import load_data
from advcal.models.state import load_state, unique_state_dict
from advcal.training import Recipe, train

SEED = 0


def prompts(names: list[str]) -> list[str]:
    return [f"This is a photo of a {name}" for name in names]


def pretrain(clip_model: torch.nn.Module, tokenizer, args: argparse.Namespace) -> None:
    """Both towers trained to pick each image's prompt among its dataset's (the CLIP objective with
    the dataset's class prompts as the negatives), Adam, seeded shuffles."""
    sets = [load_data("digits", split="train"),
            load_data("fashion-mnist", split="train", limit=args.fashion_train)]
    names = [[c.replace("_", " ") for c in data.classes] for data in sets]
    preprocess = ZeroShotClassifier(clip_model, tokenizer, names[0]).preprocess
    clip_model.requires_grad_(True)
    clip_model.logit_scale.requires_grad_(False)  # CLIP's learned 1/0.07 stays as it is
    optimiser = torch.optim.Adam([p for p in clip_model.parameters() if p.requires_grad], lr=1e-3)
    generator = torch.Generator().manual_seed(SEED)
    clip_model.train()
    for epoch in range(args.pretrain_epochs):
        total = 0.0
        for data, classes in zip(sets, names, strict=True):
            tokens = tokenizer(prompts(classes))
            for batch in torch.randperm(len(data), generator=generator).split(64):
                text = torch.nn.functional.normalize(clip_model.encode_text(tokens), dim=-1)
                features = clip_model.encode_image(preprocess(data.x[batch]))
                image = torch.nn.functional.normalize(features, dim=-1)
                loss = torch.nn.functional.cross_entropy(clip_model.logit_scale.exp() * image @ text.T,
                                                         data.y[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(batch)
        print(f"  pretraining epoch {epoch}: loss {total / sum(len(d) for d in sets):.4f}", flush=True)
    clip_model.eval()


def run_name(recipe: str, args: argparse.Namespace) -> str:
    return f"{recipe}-kl{args.kl_weight:g}" if recipe == "ucat" and args.kl_weight is not None else recipe


def fine_tune(model: ZeroShotClassifier, recipe: str, args: argparse.Namespace, reference: ZeroShotClassifier,
              eps: float) -> ZeroShotClassifier:
    train_data = load_data("digits", split="train")
    validation = load_data("digits", split="calibration", limit=128)
    plan = Recipe(recipe, eps=eps, steps=2, alpha=eps, seed=SEED, kl_weight=args.kl_weight)
    folder = args.out / run_name(recipe, args)
    shutil.rmtree(folder, ignore_errors=True)  # a fresh run every time (only the pretraining is kept)
    run = train(model, train_data, validation, plan, epochs=args.epochs, out=folder, batch_size=64,
                lr=args.lr, optimizer="sgd", schedule="cosine", warmup_epochs=1.0, val_eps=eps, val_steps=2,
                frozen_from=reference)
    last = run.log[-1]
    print(f"  {recipe}: train loss {last['train_loss']:.4f}, clean acc {last['clean_accuracy']:.3f}, "
          f"adv acc {last['adv_accuracy']:.3f}", flush=True)
    return run.model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--eps", default="1/255")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.001)
    # The paper's λ (3.9e-8) is scaled to CLIP's cosines; this model's are larger, and with it
    # UCAT collapses (docs/clip.md). 1e-9 puts its gradient on the cross-entropy's scale.
    parser.add_argument("--kl-weight", type=float, default=1e-9, help="UCAT's λ")
    parser.add_argument("--recipes", default="tecoa,fare,ucat")
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--fashion-train", type=int, default=3000)
    parser.add_argument("--fashion-limit", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path("clip-study"))
    args = parser.parse_args()
    (eps,) = parse_numbers(args.eps, "eps")
    args.out.mkdir(parents=True, exist_ok=True)
    clip_model, tokenizer = tiny_clip(seed=SEED)
    cached = args.out / "pretrained.safetensors"  # the pretraining is the slow part: kept between runs
    if cached.exists():
        load_state(clip_model, load_file(str(cached)))
    else:
        pretrain(clip_model, tokenizer, args)
        save_file(unique_state_dict(clip_model), str(cached))
    pretrained = ZeroShotClassifier(clip_model, tokenizer, [str(k) for k in range(10)])
    models = {"pretrained": pretrained}
    for recipe in args.recipes.split(","):
        models[recipe] = fine_tune(copy.deepcopy(pretrained), recipe, args, pretrained, eps).eval()
    # The suite reads a held-out set whole: the digits test split goes in as an npz file.
    test = load_data("digits", split="test")
    np.savez(args.out / "digits-test.npz", x=test.x.numpy(), y=test.y.numpy())
    specs = {"digits": f"npz:{args.out / 'digits-test.npz'}", "fashion-mnist": "fashion-mnist"}
    limits = {"digits": None, "fashion-mnist": args.fashion_limit}
    summary = {}
    for name, model in models.items():
        rows = []
        for dataset, spec in specs.items():
            result = run_zeroshot_suite(model.with_classes, None, datasets=[dataset], specs={dataset: spec},
                                        limit=limits[dataset], eps=eps, steps=args.steps, seed=SEED)
            rows += result.rows
        summary[name] = rows
        print(f"\n### {name}\n", flush=True)
        for row in rows:
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}),
                  flush=True)
    print("\n| model | dataset | clean acc | PGD | CW | AA | H | clean ECE | AA ECE | "
          "epistemic clean → adv | predictive clean → adv |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, rows in summary.items():
        for row in rows:
            print(f"| {name} | {row['dataset']} | {row['clean_accuracy']:.3f} | {row['pgd_accuracy']:.3f} | "
                  f"{row['cw_accuracy']:.3f} | {row['autoattack_accuracy']:.3f} | {row['h']:.3f} | "
                  f"{row['clean_ece']:.3f} | {row['autoattack_ece']:.3f} | "
                  f"{row['clean_epistemic_uncertainty']:.2e} → {row['adv_epistemic_uncertainty']:.2e} | "
                  f"{row['clean_predictive_uncertainty']:.3f} → {row['adv_predictive_uncertainty']:.3f} |")


if __name__ == "__main__":
    main()
