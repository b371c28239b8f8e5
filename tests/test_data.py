"""advcal.data: every source kind read from files written here in its real format, the splits,
``limit``, batching, fingerprints and every error path."""

from __future__ import annotations

import gzip
import re
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from advcal.data import DataSource, available_sources, fashion_mnist, load_data
from advcal.data.splits import allocate, split_official_train, split_three_way, stratified_order
from advcal.errors import ConfigError, InputError, MissingDependencyError
from conftest import require_system_package

SPLITS = ("train", "calibration", "test")
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# --- writers of the real file formats -------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, magic: int, *, compress: bool = True) -> Path:
    """An idx file: big-endian magic and sizes, then the unsigned bytes."""
    payload = struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def write_fashion(folder: Path, n_train_per_class: int = 10, n_test_per_class: int = 2) -> dict:
    """The four Fashion-MNIST idx files with random 28x28 images; returns the arrays written."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, per_class in (("train", n_train_per_class), ("t10k", n_test_per_class)):
        labels = rng.permutation(np.repeat(np.arange(10), per_class)).astype(np.uint8)
        images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels, 2049)
        arrays[prefix] = (images, labels)
    return arrays


def cifar_records(labels: list[bytes], rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """Binary CIFAR records (label bytes + R, G, B planes) and the (N, 3, 32, 32) images in them."""
    images = rng.integers(0, 256, size=(len(labels), 3, 32, 32), dtype=np.uint8)
    data = b"".join(label + image.tobytes() for label, image in zip(labels, images, strict=True))
    return data, images


def write_cifar10(root: Path, n_per_batch: int = 10, n_test: int = 20) -> dict:
    """cifar-10-batches-bin/ under ``root`` with five training batches, a test batch and names."""
    rng = np.random.default_rng(2)
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    written = {}
    for name, n in [(f"data_batch_{k}.bin", n_per_batch) for k in range(1, 6)] + [("test_batch.bin", n_test)]:
        labels = [k % 10 for k in range(n)]
        data, images = cifar_records([bytes([label]) for label in labels], rng)
        (folder / name).write_bytes(data)
        written[name] = (images, np.array(labels))
    # The official names file ends with blank lines.
    (folder / "batches.meta.txt").write_text("\n".join(CIFAR10_NAMES) + "\n\n")
    return written


def write_cifar100(folder: Path, per_class: int = 2) -> dict:
    """cifar-100 binary files in ``folder``: coarse label byte, fine label byte, image."""
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True)
    written = {}
    for name, n in (("train.bin", per_class), ("test.bin", 1)):
        fine = np.tile(np.arange(100), n)
        data, images = cifar_records([bytes([f // 5, f]) for f in fine], rng)
        (folder / name).write_bytes(data)
        written[name] = (images, fine)
    (folder / "fine_label_names.txt").write_text("\n".join(f"fine{k}" for k in range(100)) + "\n")
    (folder / "coarse_label_names.txt").write_text("\n".join(f"coarse{k}" for k in range(20)) + "\n")
    return written


def write_npz(path: Path, n: int = 50, n_classes: int = 5, **extra: np.ndarray) -> Path:
    """uint8 images whose every pixel is the sample's id, so a loaded sample says where it came from."""
    x = np.repeat(np.arange(n, dtype=np.uint8), 3 * 4 * 4).reshape(n, 3, 4, 4)
    arrays = {"x": x, "y": np.arange(n) % n_classes, **extra}
    np.savez(path, **arrays)
    return path


def sample_ids(data: DataSource) -> np.ndarray:
    """The ids write_npz put in the pixels."""
    return np.rint(data.x[:, 0, 0, 0].numpy() * 255).astype(int)


def write_pngs(
    root: Path, sizes: dict[str, int], shape: tuple[int, ...], seed: int = 4
) -> dict[Path, np.ndarray]:
    """PNG files in one sub-folder per class; returns each file's pixels."""
    rng = np.random.default_rng(seed)
    written = {}
    for klass, count in sizes.items():
        (root / klass).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
            path = root / klass / f"img{k:02d}.png"
            Image.fromarray(pixels).save(path)
            written[path] = pixels
    return written


def esc(path: Path) -> str:
    """A path as a regular expression that matches it literally."""
    return re.escape(str(path))


def all_splits(spec: str) -> dict[str, DataSource]:
    return {split: load_data(spec, split) for split in SPLITS}


# --- the registry ---------------------------------------------------------------------------------


def test_available_sources_lists_every_kind():
    assert available_sources() == [
        "digits", "fashion-mnist", "cifar10", "cifar100", "npz", "folder", "torchvision",
    ]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("imagenet:/data", r"unknown kind 'imagenet'.*known kinds: digits, fashion-mnist\[:DIR\], cifar10"),
        ("", "expected a spec string"),
        (None, "expected a spec string"),
        ("digits:/tmp", "digits takes no argument"),
        ("cifar10", "cifar10 needs an argument.*cifar10:DIR"),
        ("npz:", "npz needs an argument"),
        ("torchvision:CIFAR10", "torchvision: expected torchvision:NAME:ROOT"),
    ],
)
def test_bad_spec_is_a_config_error(spec, match):
    with pytest.raises(ConfigError, match=match):
        load_data(spec)


def test_bad_split_and_limit_are_input_errors():
    with pytest.raises(InputError, match="split: expected one of train, calibration, test, all, got 'val'"):
        load_data("digits", split="val")
    with pytest.raises(InputError, match="limit: expected an integer >= 1, got 0"):
        load_data("digits", limit=0)
    with pytest.raises(InputError, match=r"limit: expected an integer >= 1, got 2\.5"):
        load_data("digits", limit=2.5)


# --- digits (real data shipped with scikit-learn) -----------------------------------------------


def test_digits_splits_are_stratified_and_cover_the_dataset():
    from sklearn.datasets import load_digits

    splits = all_splits("digits")
    assert [len(splits[s]) for s in SPLITS] == [1079, 359, 359]
    assert sum(len(d) for d in splits.values()) == 1797
    for data in splits.values():
        assert data.name == "digits"
        assert data.classes == [str(k) for k in range(10)]
        assert data.x.shape[1:] == (1, 8, 8) and data.x.dtype == torch.float32
        assert data.y.dtype == torch.int64 and data.index.dtype == torch.int64
        assert 0 <= data.x.min() and data.x.max() <= 1
        assert torch.equal(data.index, torch.arange(len(data)))
        counts = torch.bincount(data.y, minlength=10)
        assert (counts > 0).all()
        # Stratified: every class holds its share of the split to within one sample or so.
        share = torch.bincount(torch.tensor(load_digits().target), minlength=10) * len(data) / 1797
        assert ((counts - share).abs() <= 1.5).all()
    # Together the splits are exactly the dataset (as a multiset of image-label rows).
    digits = load_digits()
    full = np.hstack([digits.images.reshape(-1, 64) / 16.0, digits.target[:, None]])
    ours = np.vstack([
        np.hstack([d.x.reshape(len(d), -1).double().numpy(), d.y[:, None].numpy()]) for d in splits.values()
    ])
    full_rows, full_counts = np.unique(full, axis=0, return_counts=True)
    our_rows, our_counts = np.unique(ours, axis=0, return_counts=True)
    assert np.array_equal(full_rows, our_rows) and np.array_equal(full_counts, our_counts)


def test_digits_read_from_the_file_equal_scikit_learns_loader_in_order():
    # advcal reads scikit-learn's digits file itself (importing scikit-learn costs a second).
    from sklearn.datasets import load_digits

    digits, data = load_digits(), load_data("digits", split="all")
    assert torch.equal(data.x, torch.from_numpy((digits.images / 16.0).astype(np.float32))[:, None])
    assert torch.equal(data.y, torch.from_numpy(digits.target.astype(np.int64)))


def test_loading_is_deterministic_and_fingerprints_are_stable():
    first, second = load_data("digits", "calibration"), load_data("digits", "calibration")
    for field in ("x", "y", "index"):
        assert torch.equal(getattr(first, field), getattr(second, field))
    assert first.fingerprint() == second.fingerprint()
    assert len(first.fingerprint()) == 64 and int(first.fingerprint(), 16) >= 0
    assert first.fingerprint() != load_data("digits", "test").fingerprint()
    assert first.fingerprint() != load_data("digits", "calibration", limit=50).fingerprint()


def test_limit_is_a_stratified_prefix_that_keeps_indices():
    full = load_data("digits", "test")
    ten = load_data("digits", "test", limit=10)
    assert len(ten) == 10
    assert sorted(ten.y.tolist()) == list(range(10))  # the first samples are one per class
    assert torch.equal(ten.index, ten.index.sort().values)  # returned in index order
    assert torch.equal(ten.x, full.x[ten.index]) and torch.equal(ten.y, full.y[ten.index])
    hundred = load_data("digits", "test", limit=100)
    assert set(ten.index.tolist()) <= set(hundred.index.tolist())
    assert (torch.bincount(hundred.y, minlength=10) >= 9).all()
    # A limit beyond the split's size keeps the whole split.
    assert torch.equal(load_data("digits", "test", limit=10_000).x, full.x)


def test_batches_come_in_order_with_the_requested_sizes():
    data = load_data("digits", "calibration")
    batches = list(data.batches(100))
    assert [len(index) for index, _, _ in batches] == [100, 100, 100, 59]
    for index, x, y in batches:
        assert len(index) == len(x) == len(y)
    assert torch.equal(torch.cat([index for index, _, _ in batches]), data.index)
    assert torch.equal(torch.cat([x for _, x, _ in batches]), data.x)
    assert torch.equal(torch.cat([y for _, _, y in batches]), data.y)
    assert len(list(data.batches(10_000))) == 1
    with pytest.raises(InputError, match="batch_size: expected an integer >= 1"):
        next(data.batches(0))


def test_datasource_checks_what_it_is_given():
    x, y = torch.zeros(3, 1, 2, 2), torch.zeros(3, dtype=torch.int64)
    source = DataSource("mine", "test", x, y, torch.arange(3), ["a"])
    assert len(source) == 3 and "samples=3" in repr(source)
    with pytest.raises(InputError, match="x: expected a 4-D"):
        DataSource("mine", "test", x.double(), y, torch.arange(3), ["a"])
    with pytest.raises(InputError, match="y: expected a 1-D int64 tensor"):
        DataSource("mine", "test", x, y.int(), torch.arange(3), ["a"])
    with pytest.raises(InputError, match="expected one entry per sample, got 3, 3 and 2"):
        DataSource("mine", "test", x, y, torch.arange(2), ["a"])


# --- the split rules on their own -----------------------------------------------------------------


def test_official_calibration_is_ten_percent_capped_at_5000():
    labels = np.arange(60_000) % 10  # the size of Fashion-MNIST's training set
    parts = split_official_train(labels)
    assert len(parts["calibration"]) == 5000 and len(parts["train"]) == 55_000
    assert np.bincount(labels[parts["calibration"]]).tolist() == [500] * 10
    assert np.array_equal(np.sort(np.concatenate(list(parts.values()))), np.arange(60_000))
    assert len(split_official_train(np.arange(1234) % 7)["calibration"]) == 123


def test_three_way_split_is_a_partition_even_for_tiny_classes():
    for labels in (np.arange(5), np.array([0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 2]), np.zeros(7, dtype=int)):
        parts = split_three_way(labels)
        n = len(labels)
        assert len(parts["calibration"]) == len(parts["test"]) == (2 * n + 5) // 10
        assert np.array_equal(np.sort(np.concatenate(list(parts.values()))), np.arange(n))
    assert allocate(7, np.array([10, 10, 1])).tolist() == [4, 3, 0]
    assert allocate(3, np.array([1, 1, 1, 1])).tolist() == [1, 1, 1, 0]


def test_stratified_order_starts_with_one_sample_per_class():
    labels = np.array([0] * 50 + [1] * 5 + [2] * 1)
    order = stratified_order(labels)
    assert np.array_equal(np.sort(order), np.arange(56))
    assert sorted(labels[order[:3]].tolist()) == [0, 1, 2]
    assert np.array_equal(order, stratified_order(labels))


# --- npz ------------------------------------------------------------------------------------------


def test_npz_uint8_splits_partition_the_samples(tmp_path):
    path = write_npz(tmp_path / "d.npz", classes=np.array(["a", "b", "c", "d", "e"]))
    splits = all_splits(f"npz:{path}")
    assert [len(splits[s]) for s in SPLITS] == [30, 10, 10]
    ids = {s: sample_ids(d) for s, d in splits.items()}
    assert np.array_equal(np.sort(np.concatenate(list(ids.values()))), np.arange(50))
    for data in splits.values():
        assert data.name == f"npz:{path}" and data.classes == ["a", "b", "c", "d", "e"]
        assert data.x.shape[1:] == (3, 4, 4) and data.x.dtype == torch.float32
        assert np.array_equal(data.y.numpy(), sample_ids(data) % 5)  # labels travel with their images
        assert np.array_equal(np.diff(sample_ids(data)) > 0, np.ones(len(data) - 1, bool))  # dataset order
        assert torch.bincount(data.y, minlength=5).min() >= 2
    assert torch.equal(splits["test"].x[:, 0, 0, 0] * 255, torch.tensor(ids["test"]).float())


def test_npz_float_images_are_kept_exactly(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.random((20, 1, 3, 3)).astype(np.float32)
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 0.0, 1.0
    np.savez(tmp_path / "f.npz", x=x, y=np.arange(20) % 2)
    data = {s: load_data(f"npz:{tmp_path / 'f.npz'}", s) for s in SPLITS}
    assert data["train"].classes == ["0", "1"]  # no classes array: named by label
    rows = torch.cat([d.x for d in data.values()]).reshape(20, -1)
    expected = torch.from_numpy(x.reshape(20, -1))
    assert torch.equal(rows[rows[:, 0].argsort()], expected[expected[:, 0].argsort()])


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"x": np.zeros((4, 8, 8)), "y": np.zeros(4, int)}, r"x in .*expected a 4-D \(N, C, H, W\)"),
        ({"x": np.zeros((4, 8, 8, 3)), "y": np.zeros(4, int)}, "looks channels-last"),
        ({"x": np.full((4, 1, 2, 2), 2.0), "y": np.zeros(4, int)}, r"values range over \[2, 2\], expected"),
        ({"x": np.full((4, 1, 2, 2), np.nan), "y": np.zeros(4, int)}, "contains NaN or inf"),
        ({"x": np.zeros((4, 1, 2, 2), np.int64), "y": np.zeros(4, int)}, "expected float values in"),
        ({"x": np.zeros((4, 1, 2, 2)), "y": np.zeros(3, int)}, "y in .*expected 4 integer labels"),
        ({"x": np.zeros((4, 1, 2, 2)), "y": np.zeros(4)}, "y in .*expected 4 integer labels"),
        ({"x": np.zeros((4, 1, 2, 2)), "y": -np.ones(4, int)}, "label -1 found"),
        ({"x": np.zeros((4, 1, 2, 2))}, "has no array y; arrays found: x"),
        ({"x": np.zeros((4, 1, 2, 2)), "y": np.arange(4), "classes": np.array(["a"])}, "1 names, but y has"),
        ({"x": np.zeros((0, 1, 2, 2)), "y": np.zeros(0, int)}, "holds no samples"),
    ],
)
def test_npz_errors_name_the_array(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputError, match=match):
        load_data(f"npz:{tmp_path / 'bad.npz'}")


def test_npz_file_problems(tmp_path):
    with pytest.raises(InputError, match=f"npz: file {esc(tmp_path / 'none.npz')} does not exist"):
        load_data(f"npz:{tmp_path / 'none.npz'}")
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(InputError, match=r"cannot read .*text\.npz as an \.npz archive"):
        load_data(f"npz:{tmp_path / 'text.npz'}")
    np.savez(tmp_path / "obj.npz", x=np.zeros((4, 1, 2, 2)), y=np.array([0, "a", None, 1], dtype=object))
    with pytest.raises(InputError, match=r"obj\.npz"):  # object arrays would need pickle: refused
        load_data(f"npz:{tmp_path / 'obj.npz'}")
    write_npz(tmp_path / "two.npz", n=2, n_classes=1)
    with pytest.raises(InputError, match=r"split: npz:.*two\.npz has no 'calibration' samples"):
        load_data(f"npz:{tmp_path / 'two.npz'}", "calibration")
    assert len(load_data(f"npz:{tmp_path / 'two.npz'}", "train")) == 2


# --- fashion-mnist --------------------------------------------------------------------------------


def test_fashion_mnist_reads_the_idx_files(tmp_path):
    written = write_fashion(tmp_path / "fm")
    splits = all_splits(f"fashion-mnist:{tmp_path / 'fm'}")
    test = splits["test"]
    assert test.name == f"fashion-mnist:{tmp_path / 'fm'}"
    assert test.classes[0] == "T-shirt/top" and test.classes[9] == "Ankle boot" and len(test.classes) == 10
    assert test.x.shape == (20, 1, 28, 28) and test.x.dtype == torch.float32
    # The official test set, in file order, pixel for pixel.
    images, labels = written["t10k"]
    assert torch.equal(test.x, torch.from_numpy(images[:, None]).float() / 255)
    assert torch.equal(test.y, torch.from_numpy(labels.astype(np.int64)))
    assert torch.equal(test.index, torch.arange(20))
    # Calibration is 10% of the official training set, one per class here; train is the rest.
    assert len(splits["calibration"]) == 10 and len(splits["train"]) == 90
    assert sorted(splits["calibration"].y.tolist()) == list(range(10))
    train_images, train_labels = written["train"]
    flat = {img.tobytes(): i for i, img in enumerate(train_images)}
    found = {
        s: [flat[(np.rint(img.numpy() * 255)).astype(np.uint8).tobytes()] for img in splits[s].x[:, 0]]
        for s in ("train", "calibration")
    }
    assert sorted(found["train"] + found["calibration"]) == list(range(100))
    assert np.array_equal(splits["train"].y.numpy(), train_labels[found["train"]])


def test_fashion_mnist_default_dir_and_uncompressed_files(tmp_path, monkeypatch):
    written = write_fashion(tmp_path / "fm")
    monkeypatch.setattr(fashion_mnist, "DEFAULT_DIR", tmp_path / "fm")
    data = load_data("fashion-mnist")
    assert data.name == "fashion-mnist" and len(data) == 20
    # Gunzipped files are read too.
    plain = tmp_path / "plain"
    plain.mkdir()
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (plain / stem).write_bytes(gzip.decompress((tmp_path / "fm" / f"{stem}.gz").read_bytes()))
    assert torch.equal(load_data(f"fashion-mnist:{plain}").x, data.x)
    assert torch.equal(data.y, torch.from_numpy(written["t10k"][1].astype(np.int64)))


def test_the_real_fashion_mnist_files_of_the_debian_package():
    require_system_package(fashion_mnist.DEFAULT_DIR.is_dir(), "Fashion-MNIST",
                           "apt-get install dataset-fashion-mnist")
    test = load_data("fashion-mnist", split="test")
    assert test.x.shape == (10_000, 1, 28, 28) and test.classes == fashion_mnist.CLASSES
    assert torch.equal(torch.bincount(test.y), torch.full((10,), 1000))  # balanced, 1,000 per class
    assert 0 <= float(test.x.min()) and float(test.x.max()) == 1.0
    sizes = {split: len(load_data("fashion-mnist", split=split)) for split in ("train", "calibration")}
    assert sizes == {"train": 55_000, "calibration": 5_000}


def test_fashion_mnist_missing_directory_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEFAULT_DIR", tmp_path / "absent")
    hint = r"directory .*absent does not exist.*`apt-get install dataset-fashion-mnist`"
    with pytest.raises(InputError, match=hint):
        load_data("fashion-mnist")
    with pytest.raises(InputError, match="pass fashion-mnist:DIR"):
        load_data(f"fashion-mnist:{tmp_path / 'elsewhere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"has no t10k-images-idx3-ubyte\.gz; install it with `apt-get"):
        load_data(f"fashion-mnist:{tmp_path / 'empty'}")


def test_fashion_mnist_corrupt_files_are_named(tmp_path):
    folder = tmp_path / "fm"
    write_fashion(folder)
    spec = f"fashion-mnist:{folder}"
    images = folder / "t10k-images-idx3-ubyte.gz"
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    good_images, good_labels = images.read_bytes(), labels.read_bytes()
    raw = gzip.decompress(good_images)

    images.write_bytes(gzip.compress(struct.pack(">I", 2049) + raw[4:]))  # a labels magic on images
    with pytest.raises(InputError, match=f"{esc(images)}: magic number 2049, expected 2051"):
        load_data(spec)
    images.write_bytes(gzip.compress(raw[:-100]))  # the header promises more pixels than there are
    with pytest.raises(InputError, match=f"{esc(images)}: truncated: {len(raw) - 100} bytes, expected"):
        load_data(spec)
    images.write_bytes(gzip.compress(raw[:10]))
    with pytest.raises(InputError, match="shorter than its 16-byte idx header"):
        load_data(spec)
    images.write_bytes(gzip.compress(raw + b"\0"))
    with pytest.raises(InputError, match="has trailing bytes"):
        load_data(spec)
    images.write_bytes(good_images[: len(good_images) // 2])  # a cut-off download
    with pytest.raises(InputError, match=f"{esc(images)}: cannot read the file"):
        load_data(spec)
    images.write_bytes(good_images)

    labels.write_bytes(gzip.compress(struct.pack(">I", 2051) + gzip.decompress(good_labels)[4:]))
    with pytest.raises(InputError, match=f"{esc(labels)}: magic number 2051, expected 2049"):
        load_data(spec)
    write_idx(labels, np.zeros(19, np.uint8), 2049)
    with pytest.raises(InputError, match=r"holds 19 labels but .* holds 20 images"):
        load_data(spec)
    write_idx(labels, np.full(20, 10, np.uint8), 2049)
    with pytest.raises(InputError, match=r"label 10 found, expected 0\.\.9"):
        load_data(spec)
    labels.write_bytes(good_labels)
    assert len(load_data(spec)) == 20


# --- CIFAR ----------------------------------------------------------------------------------------


def test_cifar10_binary_release(tmp_path):
    written = write_cifar10(tmp_path)
    splits = all_splits(f"cifar10:{tmp_path}")  # the parent of cifar-10-batches-bin
    test = splits["test"]
    assert test.classes == CIFAR10_NAMES
    assert test.x.shape == (20, 3, 32, 32) and test.x.dtype == torch.float32
    assert 0 <= test.x.min() and test.x.max() <= 1
    images, labels = written["test_batch.bin"]
    assert torch.equal(test.y, torch.from_numpy(labels))
    # Record 3: its red, green and blue planes in that order.
    for channel in range(3):
        assert torch.equal(test.x[3, channel], torch.from_numpy(images[3, channel]).float() / 255)
    assert [len(splits[s]) for s in ("train", "calibration")] == [45, 5]
    train_images = np.concatenate([written[f"data_batch_{k}.bin"][0] for k in range(1, 6)])
    index_of = {img.tobytes(): i for i, img in enumerate(train_images)}
    positions = [
        index_of[np.rint(img.numpy() * 255).astype(np.uint8).tobytes()]
        for s in ("train", "calibration") for img in splits[s].x
    ]
    assert sorted(positions) == list(range(50))  # disjoint, and together the training set
    # Pointing at the folder of .bin files itself gives the same data.
    direct = load_data(f"cifar10:{tmp_path / 'cifar-10-batches-bin'}", "calibration")
    assert torch.equal(direct.x, splits["calibration"].x) and torch.equal(direct.y, splits["calibration"].y)


def test_cifar100_uses_fine_labels_and_names(tmp_path):
    written = write_cifar100(tmp_path / "cifar-100-binary")
    test = load_data(f"cifar100:{tmp_path}", "test")
    assert test.classes == [f"fine{k}" for k in range(100)]
    images, fine = written["test.bin"]
    assert torch.equal(test.y, torch.from_numpy(fine))  # fine labels, not the coarse byte
    assert torch.equal(test.x[57], torch.from_numpy(images[57]).float() / 255)
    calibration = load_data(f"cifar100:{tmp_path / 'cifar-100-binary'}", "calibration", limit=7)
    assert len(calibration) == 7 and len(set(calibration.y.tolist())) == 7
    assert len(load_data(f"cifar100:{tmp_path}", "calibration")) == 20
    assert len(load_data(f"cifar100:{tmp_path}", "train")) == 180


def test_cifar_errors_name_the_file(tmp_path):
    write_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-bin"
    spec = f"cifar10:{tmp_path}"
    with (folder / "test_batch.bin").open("ab") as handle:
        handle.write(b"\x01")
    with pytest.raises(InputError, match=r"test_batch\.bin: 61461 bytes is not a positive multiple of 3073"):
        load_data(spec)
    (folder / "test_batch.bin").write_bytes(bytes([12]) + bytes(3072))
    with pytest.raises(InputError, match=r"test_batch\.bin: record 0 has label 12, expected 0\.\.9"):
        load_data(spec)
    (folder / "data_batch_4.bin").unlink()
    with pytest.raises(InputError, match=r"data_batch_4\.bin is missing"):
        load_data(spec, "train")
    (folder / "batches.meta.txt").write_text("cat\ndog\n")
    with pytest.raises(InputError, match=r"batches\.meta\.txt: 2 class names, expected 10"):
        load_data(spec)
    (folder / "batches.meta.txt").unlink()
    with pytest.raises(InputError, match=r"batches\.meta\.txt is missing"):
        load_data(spec)
    with pytest.raises(InputError, match=f"cifar10: directory {esc(tmp_path / 'nowhere')} does not exist"):
        load_data(f"cifar10:{tmp_path / 'nowhere'}")
    (tmp_path / "py" / "cifar-10-batches-py").mkdir(parents=True)
    with pytest.raises(InputError, match="looks like the python release"):
        load_data(f"cifar10:{tmp_path / 'py'}")
    write_cifar100(tmp_path / "c100")
    (tmp_path / "c100" / "test.bin").write_bytes(bytes(3073))  # a CIFAR-10-sized record
    with pytest.raises(InputError, match="not a positive multiple of 3074, the size of a cifar100 record"):
        load_data(f"cifar100:{tmp_path / 'c100'}")


# --- folder of images -----------------------------------------------------------------------------


def test_folder_of_greyscale_pngs(tmp_path):
    written = write_pngs(tmp_path / "imgs", {"cat": 5, "dog": 5, "emu": 5}, (6, 4))
    (tmp_path / "imgs" / "README.txt").write_text("ignored: not in a class folder")
    (tmp_path / "imgs" / "cat" / ".DS_Store").write_bytes(b"hidden, ignored")
    (tmp_path / "imgs" / ".cache").mkdir()
    splits = all_splits(f"folder:{tmp_path / 'imgs'}")
    assert [len(splits[s]) for s in SPLITS] == [9, 3, 3]
    expected = {
        pixels.tobytes(): ["cat", "dog", "emu"].index(path.parent.name) for path, pixels in written.items()
    }
    seen = []
    for data in splits.values():
        assert data.classes == ["cat", "dog", "emu"]
        assert data.x.shape[1:] == (1, 6, 4)  # greyscale: one channel; height 6, width 4
        for image, label in zip(data.x, data.y, strict=True):
            key = np.rint(image[0].numpy() * 255).astype(np.uint8).tobytes()
            assert expected[key] == label
            seen.append(key)
        if data.split != "train":  # 20% of 5 images per class: one of each
            assert sorted(data.y.tolist()) == [0, 1, 2]
    assert sorted(seen) == sorted(expected)  # every image once, in exactly one split


def test_folder_with_a_colour_image_is_read_as_rgb(tmp_path):
    root = tmp_path / "imgs"
    grey = write_pngs(root, {"a": 4, "b": 4}, (5, 5))
    colour = np.random.default_rng(6).integers(0, 256, size=(5, 5, 3), dtype=np.uint8)
    Image.fromarray(colour).save(root / "b" / "zz.png")
    images = torch.cat([d.x for d in all_splits(f"folder:{root}").values()])
    assert images.shape == (9, 3, 5, 5)
    as_bytes = {np.rint(img.numpy() * 255).astype(np.uint8).tobytes() for img in images}
    assert colour.transpose(2, 0, 1).tobytes() in as_bytes  # R, G, B planes
    for pixels in grey.values():  # grey images repeat their one channel
        assert np.stack([pixels] * 3).tobytes() in as_bytes


def test_folder_errors_name_the_file(tmp_path):
    root = tmp_path / "imgs"
    write_pngs(root, {"a": 3, "b": 3}, (4, 4))
    Image.fromarray(np.zeros((5, 4), np.uint8)).save(root / "b" / "wide.png")
    with pytest.raises(InputError, match=r"wide.png is 4x5 but .*a/img00.png is 4x4 .*does not resize"):
        load_data(f"folder:{root}")
    (root / "b" / "wide.png").unlink()
    (root / "b" / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match=r"notes.txt is not an image Pillow can read"):
        load_data(f"folder:{root}")
    (root / "b" / "notes.txt").unlink()
    good = (root / "a" / "img00.png").read_bytes()
    (root / "a" / "img00.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match=r"img00\.png is not an image Pillow can read"):
        load_data(f"folder:{root}")
    (root / "a" / "img00.png").write_bytes(good)
    (root / "a" / "nested").mkdir()
    with pytest.raises(InputError, match="nested is a folder inside the class folder a"):
        load_data(f"folder:{root}")
    (root / "a" / "nested").rmdir()
    (root / "c").mkdir()
    with pytest.raises(InputError, match=r"class folder .*c holds no images"):
        load_data(f"folder:{root}")
    with pytest.raises(InputError, match=f"folder: directory {esc(tmp_path / 'none')} does not exist"):
        load_data(f"folder:{tmp_path / 'none'}")
    (tmp_path / "flat").mkdir()
    with pytest.raises(InputError, match="has no class sub-folders"):
        load_data(f"folder:{tmp_path / 'flat'}")
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / "deep.png")  # 16-bit greyscale
    (tmp_path / "modes" / "a").mkdir(parents=True)
    (tmp_path / "deep.png").rename(tmp_path / "modes" / "a" / "deep.png")
    with pytest.raises(InputError, match=r"deep\.png has image mode 'I"):
        load_data(f"folder:{tmp_path / 'modes'}")


# --- torchvision (optional, and not importable beside this torch) -------------------------------


def test_torchvision_missing_is_a_missing_dependency_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # make `import torchvision` fail here
    with pytest.raises(MissingDependencyError) as caught:
        load_data(f"torchvision:CIFAR10:{tmp_path}")
    message = str(caught.value)
    assert "torchvision is optional" in message
    assert "pip install 'advcal[vision]'" in message
    assert "torch/torchvision pair that import together" in message
    for alternative in ("cifar10:DIR", "fashion-mnist", "folder:PATH", "npz:PATH"):
        assert alternative in message


def test_torchvision_loader_converts_a_dataset_object(tmp_path, monkeypatch):
    """The loader's own code, run against a stand-in module with torchvision's constructor signature."""

    class ChannelsLast:  # like torchvision's CIFAR10: (N, H, W, C) uint8 and a list of targets
        def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
            assert not download and Path(root) == tmp_path
            self.classes = ["a", "b", "c"]
            n = 30 if train else 9
            self.data = np.arange(n * 48).reshape(n, 4, 4, 3).astype(np.uint8)
            self.targets = [k % 3 for k in range(n)]

    datasets = types.ModuleType("torchvision.datasets")
    datasets.ChannelsLast = ChannelsLast
    package = types.ModuleType("torchvision")
    package.datasets = datasets
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)
    test = load_data(f"torchvision:ChannelsLast:{tmp_path}", "test")
    assert test.name == f"torchvision:ChannelsLast:{tmp_path}" and test.classes == ["a", "b", "c"]
    expected = np.arange(9 * 48).reshape(9, 4, 4, 3).astype(np.uint8).transpose(0, 3, 1, 2)
    expected = torch.from_numpy(expected.copy()).float()
    assert torch.equal(test.x * 255, expected) and test.y.tolist() == [0, 1, 2] * 3
    sizes = [len(load_data(f"torchvision:ChannelsLast:{tmp_path}", s)) for s in ("train", "calibration")]
    assert sizes == [27, 3]
    with pytest.raises(ConfigError, match=r"torchvision\.datasets has no dataset class 'Nope'"):
        load_data(f"torchvision:Nope:{tmp_path}")


def test_split_all_takes_every_sample_of_a_source_without_an_official_test_set(tmp_path):
    x = np.random.default_rng(0).uniform(size=(50, 1, 4, 4)).astype(np.float32)
    y = np.arange(50) % 5
    np.savez(tmp_path / "f.npz", x=x, y=y)
    whole = load_data(f"npz:{tmp_path / 'f.npz'}", "all")
    assert len(whole) == 50 and np.array_equal(whole.y.numpy(), y)
    assert np.array_equal(whole.index.numpy(), np.arange(50))
    assert whole.fingerprint() != load_data(f"npz:{tmp_path / 'f.npz'}", "test").fingerprint()
    assert len(load_data(f"npz:{tmp_path / 'f.npz'}", "all", limit=10)) == 10


def test_split_all_is_refused_where_an_official_test_set_exists(tmp_path):
    with pytest.raises(InputError, match="has an official test set"):
        load_data(f"cifar10:{tmp_path}", "all")
