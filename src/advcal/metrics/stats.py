"""Streaming, mergeable calibration statistics.

:class:`CalibrationStats` takes batches of scores (logits by default) and labels and keeps:

* one small record per sample of its *top label*: confidence, correctness, Brier and NLL
  contributions, true class, and a key (its index) — ``O(N)``, never ``O(N x C)``. Equal-mass
  binning (ACE), smooth ECE and the bootstrap need the samples themselves, and every
  equal-width figure (ECE, MCE, reliability curve, per-class) is a cheap ``bincount`` of them;
* the class-wise cells behind SCE: for every class and equal-width bin, the number of samples
  whose probability for that class falls in the bin, the sum of those probabilities and how
  many of those samples truly belong to the class — ``O(C x bins)``. These need the whole
  probability matrix, so they are accumulated batch by batch;
* when ``bootstrap > 0``, the same class-wise cells under each Poisson bootstrap replicate.

Merging concatenates records and adds cells, so statistics from shards equal those of the
whole set: counts exactly, sums to float64 rounding. When samples carry explicit indices,
``compute`` orders records by index, so the result does not depend on sharding or order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse

from advcal._core.contract import LOG_TINY, OUTPUT_KINDS, as_logits64, as_tensor, check_labels, check_scores
from advcal._core.devices import physical_memory
from advcal._core.errors import InputError, describe
from advcal._core.validation import check_int, check_seed
from advcal.metrics import bootstrap as boot
from advcal.metrics.binning import equal_width_bin_index
from advcal.metrics.report import CalibrationReport, build_report

# Scores are processed in chunks of about this many elements (8 MB in float64), so memory
# stays at a few copies of one chunk whatever the size of the input.
CHUNK_ELEMENTS = 1 << 20

_RECORD_FIELDS = ("key", "label", "confidence", "correct", "brier", "nll")
_CELL_FIELDS = ("class_count", "class_prob", "class_hits")


@dataclass
class _Records:
    """Per-sample top-label records, concatenated lazily."""

    key: list[np.ndarray]
    label: list[np.ndarray]
    confidence: list[np.ndarray]
    correct: list[np.ndarray]
    brier: list[np.ndarray]
    nll: list[np.ndarray]

    @classmethod
    def empty(cls) -> _Records:
        return cls(*([] for _ in _RECORD_FIELDS))

    def append(self, **fields: np.ndarray) -> None:
        for name in _RECORD_FIELDS:
            getattr(self, name).append(fields[name])

    def extend(self, other: _Records) -> None:
        for name in _RECORD_FIELDS:
            getattr(self, name).extend(getattr(other, name))

    def joined(self) -> dict[str, np.ndarray]:
        out = {}
        for name in _RECORD_FIELDS:
            parts = getattr(self, name)
            joined = np.concatenate(parts) if len(parts) != 1 else parts[0]
            setattr(self, name, [joined])
            out[name] = joined
        return out


class CalibrationStats:
    """Sufficient statistics for every advcal calibration metric, updated batch by batch.

    Args:
        n_bins: number of equal-width (and equal-mass) confidence bins.
        n_classes: number of classes; taken from the first batch when omitted.
        inputs: what the scores are: ``"logits"`` (default), ``"probs"`` or ``"log_probs"``.
        classwise: keep the class-wise cells needed for SCE (one extra pass over each batch).
        bootstrap: number of Poisson bootstrap replicates for confidence intervals (0: none).
        seed: bootstrap seed. Replicate weights depend only on ``(seed, sample index)``.

    Example:
        >>> stats = CalibrationStats(n_bins=15)
        >>> for logits, labels in batches:          # doctest: +SKIP
        ...     stats.update(logits, labels)
        >>> report = stats.compute()                # doctest: +SKIP
        >>> report["ece"], report["ace"]            # doctest: +SKIP
    """

    def __init__(
        self,
        n_bins: int = 15,
        n_classes: int | None = None,
        inputs: str = "logits",
        classwise: bool = True,
        bootstrap: int = 0,
        seed: int = 0,
    ) -> None:
        check_int(n_bins, "n_bins", 1)
        if n_classes is not None:
            check_int(n_classes, "n_classes", 2)
        check_int(bootstrap, "bootstrap", 0)
        check_seed(seed)
        if inputs not in OUTPUT_KINDS:  # a bad value of a documented argument: InputError
            raise InputError(f"inputs: expected one of {', '.join(OUTPUT_KINDS)}, got {inputs!r}")
        self.n_bins = n_bins
        self.n_classes = n_classes
        self.inputs = inputs
        self.classwise = bool(classwise)
        self.bootstrap = bootstrap
        self.seed = seed
        self.n_samples = 0
        # None until the first update says whether samples carry explicit indices.
        self.indexed: bool | None = None
        self._records = _Records.empty()
        self._largest_key: int | None = None  # of the explicit indices added (None: not known yet)
        self._cells: dict[str, torch.Tensor] | None = None
        self._replicate_cells: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ updating
    def update(
        self, scores: object, labels: object, index: object | None = None
    ) -> CalibrationStats:
        """Add a batch: ``scores`` of shape ``(N, C)`` and integer ``labels`` of shape ``(N,)``.

        ``index`` (optional, shape ``(N,)``) gives each sample's position in the whole
        evaluation set. With it, results do not depend on batching, sharding or order, and
        bootstrap replicates stay consistent across merged shards. The batch is validated in
        full before anything is added, so a bad batch leaves the statistics unchanged.
        """
        scores_t = check_scores(scores, self.inputs, "scores")
        n, n_classes = scores_t.shape
        if self.n_classes is not None and n_classes != self.n_classes:
            raise InputError(
                f"scores: expected {self.n_classes} class columns (as in earlier batches), "
                f"got {describe(scores_t)}"
            )
        labels_t = check_labels(labels, n, n_classes, "labels")
        keys, indexed = self._keys(index, n)
        if self._cells is None:
            check_stats_memory(self.n_bins, n_classes, self.bootstrap)
        # Everything is valid: only from here on does the object change.
        self.n_classes, self.indexed = n_classes, indexed
        if self._cells is None:
            self._cells = _empty_cells(n_classes, self.n_bins, torch.int64, ())
            if self.bootstrap:
                shape = (self.bootstrap,)
                self._replicate_cells = _empty_cells(n_classes, self.n_bins, torch.float64, shape)
        seeds = boot.sample_seeds(self.seed, keys) if self.bootstrap else None
        rows = max(1, CHUNK_ELEMENTS // n_classes)
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            weights = None if seeds is None else boot.poisson_weights(
                seeds[start:stop], range(self.bootstrap), samples_first=True
            )
            self._update_chunk(
                scores_t[start:stop], labels_t[start:stop], keys[start:stop], weights
            )
        self.n_samples += n
        if indexed:
            self._largest_key = max(int(keys.max()), -1 if self._largest_key is None else self._largest_key)
        return self

    def _keys(self, index: object | None, n: int) -> tuple[np.ndarray, bool]:
        """The batch's sample keys and whether they are explicit indices (changes nothing)."""
        explicit = index is not None
        if self.indexed is not None and explicit != self.indexed:
            raise InputError(
                "index: give sample indices with every batch or with none "
                f"(earlier batches {'had' if self.indexed else 'had no'} index)"
            )
        if not explicit:
            return np.arange(self.n_samples, self.n_samples + n, dtype=np.int64), False
        index_t = as_tensor(index, "index")
        if index_t.is_floating_point() or index_t.dtype == torch.bool or index_t.shape != (n,):
            raise InputError(
                f"index: expected a 1-D integer array of {n} sample indices, got {describe(index_t)}"
            )
        keys = index_t.long().numpy().copy()
        if keys.min() < 0:
            raise InputError(f"index: sample indices must be >= 0, got {int(keys.min())}")
        if self._largest_key is None and any(part.size for part in self._records.key):
            self._largest_key = max(int(part.max()) for part in self._records.key if part.size)
        _refuse_repeats(keys, self._records.key, self._largest_key)
        return keys, True

    def _update_chunk(
        self,
        scores: torch.Tensor,
        labels: torch.Tensor,
        keys: np.ndarray,
        weights: np.ndarray | None,
    ) -> None:
        # One fused float64 softmax, in place: e = exp(x - max) with total = sum(e), so that
        # p = e / total and log p = (x - max) - log(total), as log_softmax computes it. The
        # largest probability is 1 / total: it never rounds to 1.0 before it must.
        logits = as_logits64(scores, self.inputs)
        rows = torch.arange(len(labels))
        top, prediction = logits.max(1)
        log_p_true = logits[rows, labels] - top
        unnormalised = logits.sub_(top[:, None]).exp_()
        total = unnormalised.sum(1)
        log_p_true -= total.log()
        if self.inputs != "logits":
            log_p_true.clamp_min_(LOG_TINY)
        # The same quotient that bins the class-wise cells, so hits and counts agree.
        p_true = unnormalised[rows, labels] / total
        # Sum over classes of (p_c - 1[c = y])^2, written so 1 - p_y keeps full precision.
        sum_sq = (torch.linalg.vector_norm(unnormalised, dim=1) / total).square()
        brier = sum_sq - p_true * p_true + torch.expm1(log_p_true).square()
        self._records.append(
            key=keys,
            label=labels.numpy(),
            confidence=total.reciprocal().numpy(),
            correct=(prediction == labels).numpy(),
            brier=brier.numpy(),
            nll=(-log_p_true).numpy(),
        )
        if self.classwise:
            entries = _ClassEntries.of(unnormalised, total, labels, self.n_bins)
            _add_class_cells(self._cells, entries, unnormalised, total)
            if weights is not None:
                _add_replicate_class_cells(self._replicate_cells, entries, unnormalised, total, weights)

    # ------------------------------------------------------------------ merging
    def merge(self, other: CalibrationStats) -> CalibrationStats:
        """A new :class:`CalibrationStats` holding the samples of ``self`` and ``other``."""
        if not isinstance(other, CalibrationStats):
            raise InputError(f"other: expected CalibrationStats, got {type(other).__name__}")
        for name in ("n_bins", "inputs", "classwise", "bootstrap", "seed"):
            if getattr(self, name) != getattr(other, name):
                raise InputError(
                    f"other: cannot merge statistics with {name}={getattr(other, name)!r} into "
                    f"statistics with {name}={getattr(self, name)!r}"
                )
        if self.n_classes and other.n_classes and self.n_classes != other.n_classes:
            raise InputError(
                f"other: cannot merge statistics of {other.n_classes} classes into statistics "
                f"of {self.n_classes} classes"
            )
        both = [s for s in (self, other) if s.n_samples]
        if len({s.indexed for s in both}) > 1:
            raise InputError("other: cannot merge indexed with unindexed statistics")
        if len(both) == 2 and not self.indexed:
            if self.bootstrap:
                raise InputError(
                    "other: merging bootstrapped statistics needs explicit sample indices "
                    "(pass index= to update) so replicate weights stay tied to samples"
                )
        merged = CalibrationStats(
            self.n_bins, self.n_classes or other.n_classes, self.inputs, self.classwise,
            self.bootstrap, self.seed,
        )
        for part in both:
            merged._records.extend(part._records)
            merged._cells = _add_cells(merged._cells, part._cells)
            merged._replicate_cells = _add_cells(merged._replicate_cells, part._replicate_cells)
            merged.n_samples += part.n_samples
            merged.indexed = part.indexed
        if len(both) == 2 and not merged.indexed:
            # Unindexed keys are positions: renumber the second part after the first.
            merged._records.key = [np.arange(merged.n_samples, dtype=np.int64)]
        return merged

    def __add__(self, other: CalibrationStats) -> CalibrationStats:
        return self.merge(other)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, np.ndarray]:
        """Every statistic as named numpy arrays (for safetensors files or all-reduce)."""
        self._require_samples()
        state = {name: value for name, value in self._records.joined().items()}
        state["correct"] = state["correct"].astype(np.uint8)
        for prefix, cells in (("", self._cells), ("replicate_", self._replicate_cells)):
            for name, value in (cells or {}).items():
                state[prefix + name] = value.numpy()
        state["config"] = self.config_vector(bool(self.indexed))
        state["checksum"] = state_checksum(state)
        return state

    def config_vector(self, indexed: bool) -> np.ndarray:
        """The settings as the ``config`` entry of a state dict (see :meth:`from_state_dict`)."""
        return np.array(
            [self.n_bins, self.n_classes or 0, int(self.classwise), self.bootstrap, self.seed,
             int(indexed), OUTPUT_KINDS.index(self.inputs)],
            dtype=np.int64,
        )

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray]) -> CalibrationStats:
        """Rebuild statistics saved with :meth:`state_dict`; a state whose content does not
        match its ``checksum`` (edited, truncated or corrupted) is refused."""
        missing = [name for name in ("config", "checksum", *_RECORD_FIELDS) if name not in state]
        if missing:
            raise InputError(f"state: missing entries {', '.join(missing)}")
        if not np.array_equal(np.asarray(state["checksum"]), state_checksum(state)):
            raise InputError("state: its content does not match its checksum (edited, truncated or "
                             "corrupted); save the statistics again with state_dict()")
        n_bins, n_classes, classwise, n_boot, seed, indexed, kind = (
            int(v) for v in state["config"]
        )
        stats = cls(n_bins, n_classes, OUTPUT_KINDS[kind], bool(classwise), n_boot, seed)
        fields = {name: np.asarray(state[name]) for name in _RECORD_FIELDS}
        fields["correct"] = fields["correct"].astype(bool)
        stats._records.append(**fields)
        stats.n_samples = len(fields["key"])
        stats.indexed = bool(indexed)
        stats._cells = {
            name: torch.from_numpy(np.array(state[name])) for name in _CELL_FIELDS if name in state
        }
        if classwise and len(stats._cells) != len(_CELL_FIELDS):
            raise InputError(f"state: class-wise statistics need entries {', '.join(_CELL_FIELDS)}")
        if classwise and n_boot:
            names = ["replicate_" + name for name in _CELL_FIELDS]
            if any(name not in state for name in names):
                raise InputError(f"state: bootstrap statistics need entries {', '.join(names)}")
            stats._replicate_cells = {
                name: torch.from_numpy(np.array(state["replicate_" + name])) for name in _CELL_FIELDS
            }
        return stats

    # ------------------------------------------------------------------ computing
    def compute(self, smooth: bool = False, ci: float = 0.95) -> CalibrationReport:
        """The calibration report of every sample seen so far.

        Args:
            smooth: also compute smooth ECE (a root-finding over kernel bandwidths).
            ci: level of the bootstrap percentile intervals (when ``bootstrap > 0``).
        """
        self._require_samples()
        if not 0 < ci < 1:
            raise InputError(f"ci: expected a confidence level in (0, 1), got {ci!r}")
        records = self._records.joined()
        if self.indexed:
            records = _sorted_by_key(records)
        return build_report(
            records,
            self._cells if self.classwise else None,
            self._replicate_cells if self.classwise else None,
            n_bins=self.n_bins,
            n_classes=int(self.n_classes),
            bootstrap=self.bootstrap,
            seed=self.seed,
            ci=ci,
            smooth=smooth,
            settings={"inputs": self.inputs, "indexed": bool(self.indexed)},
        )

    def _require_samples(self) -> None:
        if self.n_samples == 0:
            raise InputError("scores: no samples were added (call update with a non-empty batch)")

    def __repr__(self) -> str:
        return (
            f"CalibrationStats(n_samples={self.n_samples}, n_classes={self.n_classes}, "
            f"n_bins={self.n_bins}, bootstrap={self.bootstrap})"
        )


def check_stats_memory(n_bins: int, n_classes: int, bootstrap: int) -> None:
    """Refuse settings whose class-wise cells and bootstrap replicates would not fit in this
    machine's memory, saying how much they would need, before anything is allocated."""
    need = 8 * (1 + bootstrap) * n_bins * (len(_CELL_FIELDS) * n_classes + 3)
    have = physical_memory()
    if need > have:
        raise InputError(
            f"bootstrap, n_bins: {bootstrap} bootstrap replicates of {n_bins} bins x {n_classes} classes "
            f"need about {_gigabytes(need)} of memory, more than this machine's {_gigabytes(have)}; "
            "use fewer bins or replicates"
        )


def _gigabytes(size: float) -> str:
    return f"{size / 1e9:,.0f} GB" if size >= 1e9 else f"{size / 1e9:.2f} GB"


def state_checksum(state: dict[str, np.ndarray]) -> np.ndarray:
    """The sha256 (32 uint8) of every entry of a state but ``checksum``: names, dtypes, shapes
    and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        if name == "checksum":
            continue
        value = np.ascontiguousarray(state[name])
        digest.update(f"{name}:{value.dtype.str}:{value.shape};".encode())
        digest.update(value.tobytes())
    return np.frombuffer(digest.digest(), dtype=np.uint8).copy()


def _refuse_repeats(keys: np.ndarray, earlier: list[np.ndarray], largest: int | None) -> None:
    """An InputError if a sample index repeats in ``keys`` or is among the ``earlier`` batches'
    (whose largest is ``largest``), found before the batch is added: a stream in index order
    costs one comparison per batch, any other a look through the earlier indices."""
    ordered = np.sort(keys)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if not repeated.size and largest is not None and ordered[0] <= largest:
        seen = np.concatenate(earlier)
        repeated = keys[np.isin(keys, seen)]
    if repeated.size:
        raise InputError(f"index: sample index {int(repeated[0])} was added more than once")


def _sorted_by_key(records: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    keys = records["key"]
    if keys.size > 1 and not bool((keys[1:] > keys[:-1]).all()):
        order = np.argsort(keys, kind="stable")
        records = {name: value[order] for name, value in records.items()}
        keys = records["key"]
    duplicate = keys[1:] == keys[:-1]
    if duplicate.any():
        raise InputError(
            f"index: sample index {int(keys[1:][duplicate][0])} was added more than once"
        )
    return records


def _empty_cells(
    n_classes: int, n_bins: int, count_dtype: torch.dtype, lead: tuple[int, ...]
) -> dict[str, torch.Tensor]:
    """Zeroed class-wise cells; counts are int64 unweighted, float64 under bootstrap weights."""
    shape = (*lead, n_classes, n_bins)
    return {
        name: torch.zeros(shape, dtype=torch.float64 if name == "class_prob" else count_dtype)
        for name in _CELL_FIELDS
    }


def _add_cells(
    total: dict[str, torch.Tensor] | None, part: dict[str, torch.Tensor] | None
) -> dict[str, torch.Tensor] | None:
    if part is None:
        return total
    if total is None:
        return {name: value.clone() for name, value in part.items()}
    return {name: total[name] + part[name] for name in total}


@dataclass
class _ClassEntries:
    """A chunk's class probabilities that may lie above bin 0, each with its cell.

    Probabilities are ``unnormalised / total[:, None]``. Those below 1/n_bins all fall in
    bin 0 and are the bulk of an ``N x C`` matrix; only the few entries above it (at most
    ``n_bins`` per row) are binned one by one, and bin 0 gets the rest from column totals.
    (In numpy after the first pass: on batch-sized arrays a torch call costs several numpy calls.)
    """

    rows: np.ndarray  # sample (row of the chunk) of each entry
    values: np.ndarray  # its probability
    cell: np.ndarray  # class * n_bins + bin
    true: np.ndarray  # whether its class is the sample's label
    labels: np.ndarray
    n_classes: int
    n_bins: int

    @classmethod
    def of(cls, unnormalised: torch.Tensor, total: torch.Tensor, labels: torch.Tensor, n_bins: int
           ) -> _ClassEntries:
        # A hair below the threshold, so rounding never hides an entry that belongs above it;
        # the exact bin of each candidate is decided below from its probability. (The one
        # pass over the whole chunk in torch, whose threads make it twice numpy's speed.)
        candidate = unnormalised >= (total * ((1 - 1e-12) / n_bins))[:, None]
        rows, cols = (index.numpy() for index in torch.nonzero(candidate, as_tuple=True))
        scores, totals = unnormalised.numpy(), total.numpy()
        values = scores[rows, cols] / totals[rows]
        cell = cols * n_bins + equal_width_bin_index(torch.from_numpy(values), n_bins).numpy()
        # A sample is a hit in the cell of its true class; true-class probabilities that are
        # not candidates are in bin 0.
        label_array = labels.numpy()
        return cls(rows, values, cell, cols == label_array[rows], label_array, scores.shape[1], n_bins)


def _add_class_cells(
    cells: dict[str, torch.Tensor], entries: _ClassEntries, unnormalised: torch.Tensor, total: torch.Tensor
) -> None:
    """Add a chunk's class-wise cells (counts, probability sums, hits)."""
    n, n_classes, size = len(entries.labels), entries.n_classes, entries.n_classes * entries.n_bins
    shape = (n_classes, entries.n_bins)
    count = np.bincount(entries.cell, minlength=size).reshape(shape)
    # (bincount of an empty index returns int64 even with float weights: cast.)
    prob = np.bincount(entries.cell, entries.values, size).astype(np.float64, copy=False).reshape(shape)
    hits = np.bincount(entries.cell[entries.true], minlength=size).reshape(shape)
    count[:, 0] += n - count.sum(1)
    prob[:, 0] += (total.reciprocal() @ unnormalised).numpy() - prob.sum(1)
    hits[:, 0] += np.bincount(entries.labels, minlength=n_classes) - hits.sum(1)
    for name, value in zip(_CELL_FIELDS, (count, prob, hits), strict=True):
        cells[name] += torch.from_numpy(value)


def _add_replicate_class_cells(
    cells: dict[str, torch.Tensor], entries: _ClassEntries, unnormalised: torch.Tensor,
    total: torch.Tensor, weights: np.ndarray,
) -> None:
    """Add a chunk's class-wise cells under each column of ``weights`` (shape ``(samples, replicates)``).

    Per replicate, every cell sums its entries' sample weights: one sparse (sums x samples)
    matrix times the weights gives the count, probability and hit cells, and for bin 0's
    remainders each class's members and the total weight. Each class's probability total,
    the one dense sum, is a matrix product.
    """
    n, n_classes, n_bins = len(entries.labels), entries.n_classes, entries.n_bins
    cell, rows, size = entries.cell, entries.rows, n_classes * n_bins
    hit = np.flatnonzero(entries.true)
    samples = np.arange(n)
    stacked = sparse.coo_matrix(
        (
            np.concatenate([np.ones(len(cell)), entries.values, np.ones(len(hit) + 2 * n)]),
            (
                np.concatenate([cell, size + cell, 2 * size + cell[hit], 3 * size + entries.labels,
                                np.full(n, 3 * size + n_classes)]),
                np.concatenate([rows, rows, rows[hit], samples, samples]),
            ),
        ),
        shape=(3 * size + n_classes + 1, n),
    )
    sums = stacked @ weights  # (sums, replicates)
    # In torch, not numpy: numpy's OpenBLAS threads spin after a product and slow the passes.
    class_prob = ((unnormalised / total[:, None]).T @ torch.from_numpy(weights)).numpy()
    count, prob, hits = sums[: 3 * size].reshape(3, n_classes, n_bins, -1)
    count[:, 0] += sums[-1] - count.sum(1)
    prob[:, 0] += class_prob - prob.sum(1)
    hits[:, 0] += sums[3 * size : -1] - hits.sum(1)
    for name, value in zip(_CELL_FIELDS, (count, prob, hits), strict=True):
        cells[name] += torch.from_numpy(value).permute(2, 0, 1)  # replicates first
