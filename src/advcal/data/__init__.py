"""Data sources from a spec string, split deterministically.

>>> from advcal.data import load_data
>>> data = load_data("digits", split="test", limit=100)      # doctest: +SKIP
>>> for index, x, y in data.batches(32): ...                   # doctest: +SKIP

Spec kinds (:func:`available_sources`):

- ``digits`` — scikit-learn's 1,797 handwritten digits, 1x8x8 (pixel values / 16).
- ``fashion-mnist[:DIR]`` — the original idx files (``train-images-idx3-ubyte.gz``, ...);
  DIR defaults to ``/usr/share/datasets/fashion-mnist`` (``apt-get install
  dataset-fashion-mnist``). 1x28x28.
- ``cifar10:DIR``, ``cifar100:DIR`` — the official binary releases (DIR is the folder holding
  the ``.bin`` files or its parent); CIFAR-100 uses the fine labels. 3x32x32.
- ``npz:PATH`` — arrays ``x`` (N, C, H, W) float in [0, 1] or uint8, ``y`` integer labels,
  optional ``classes`` (strings). Read with ``allow_pickle=False``.
- ``folder:PATH`` — one sub-folder of images per class (sorted names are the classes), one
  common size, RGB if any image is in colour, else greyscale.
- ``torchvision:NAME:ROOT`` — ``torchvision.datasets.NAME`` with ``download=False``; needs the
  optional torchvision.

Images come as float32 in [0, 1] (uint8 files divided by 255), labels as int64.

**Splits.** No global random state is used: each sample's place comes from a fixed 64-bit hash
of its position (:func:`advcal._core.rng.sample_keys` with a fixed seed), so a split depends only on
the labels and is the same on every run and machine.

- Datasets with an official test set (fashion-mnist, cifar10, cifar100, torchvision): ``test``
  is the official test set, in file order. ``calibration`` is round(10%), at most 5,000, of the
  official training set, stratified by class; ``train`` is the rest of the training set.
- Datasets without one (digits, npz, folder): ``calibration`` and ``test`` each take round(20%)
  of all samples, stratified by class; ``train`` is the remaining 60%. ``all`` takes every
  sample, for a file or folder that already is a held-out set.
- **Default split** (:func:`default_split`): a user's own ``npz:`` or ``folder:`` is read whole
  (``all``); a built-in dataset gives its ``test`` split. ``digits``' test split is advcal's
  own (above), not scikit-learn's usual ``train_test_split(test_size=0.25, random_state=0)``,
  whose training part holds 75% of advcal's test images: train a model to audit on digits
  with ``load_data("digits", split="train")`` (``advcal train`` does), never on another split.

Stratified means: the split's size is spread over classes in proportion to their sizes by
largest remainder (ties to the lower label; ``test`` in proportion to what ``calibration`` left),
and within each class the samples with the lowest hashes are taken (rounding is half up). Within a
split, samples keep their dataset order, and ``index`` is a sample's position in the split (0, 1,
...). A split that a tiny dataset leaves empty is an InputError.

**limit.** ``limit=N`` orders the split stratified: within each class by a second fixed hash of
``index``, the k-th sample (k = 0, 1, ...) of a class of n gets the key k / n, and samples are
sorted by key, ties by label. The first N of that order are kept — so the first samples are one
per class, any ``limit`` at least the number of classes covers every class, and any prefix holds
each class in proportion to its size, off by less than one sample for balanced classes (less than
the number of classes in general) — and returned sorted by ``index``. A larger limit keeps a
superset, and each kept sample keeps its ``index``, hence its per-sample randomness.

:meth:`DataSource.fingerprint` hashes the name (which holds the path for path specs), the split,
the image shape and the bytes of ``x`` and ``y``: the same data under another path or ``limit``
has another fingerprint.

Layer (docs/architecture.md; lint-imports holds it): imports only from _core.
"""

from advcal.data.adversarial import AdversarialSet
from advcal.data.registry import KINDS, available_sources, default_split, load_data, parse_spec
from advcal.data.source import DataSource
from advcal.data.splits import SPLITS

__all__ = ["KINDS", "SPLITS", "AdversarialSet", "DataSource", "available_sources", "default_split",
           "load_data", "parse_spec"]
