"""A reproducible, stratified subset of each split (``data.subset``): a quick study on a slice of the archive.

Per split the configuration asks for a fraction (0 < f ≤ 1: ``round(f · n)`` of the split's n patches, at least
one) or a number of patches (an integer above 1; a split with fewer keeps all of them, with a warning). A value of
1 keeps the whole split, and where every split keeps its whole self nothing is drawn and the data stage's outputs
are those of no subset, byte for byte.

The draw is iterative stratification (Sechidis, Tsoumakas and Vlahavas, "On the stratification of multi-label
data", ECML PKDD 2011) with two folds, the drawn patches and the rest, so that every class keeps its share of the
split as far as co-occurring labels allow. Each class c wants r · n_c drawn patches (r = k / n, n_c the split's
patches carrying c; patches of no class count as a class of their own). Repeatedly the class with the fewest
undecided patches is taken (the rarest first); of its undecided patches, in a random order, as many as it still
wants (rounded, never below zero) are drawn and the others set aside. Where Sechidis et al. hand each patch to
the fold that wants its label most, one at a time, this draws the same number at once. The patches drawn for
one class carry others at random, so the total strays from k by a few dozen patches at BigEarthNet's size and
the later classes by a few patches from their shares. The draw is then brought to k exactly one patch at a time
and refined by swapping a drawn patch for an undrawn one, each move the one that lowers
Σ_c (drawn_c − r · n_c)² / max(r · n_c, 1) most (ties at random), until no swap lowers it (at most
``MAX_SWAPS``). On the v2.0 splits (10 %, 5,000 or 1 % of a split) this leaves every class within a patch of
r · n_c, where a random draw of 10 % misses by up to about a hundred, in about a second per split. The draw
reads only the split's labels, in the label table's order, and a generator seeded by (``data.subset.seed``,
split), so a split's subset does not depend on the other splits' settings, and the same table, sizes and seed
give the same subset.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benloss.errors import InputError
from benloss.facts.nomenclature import classes
from benloss.facts.splits import SPLITS, write_list
from benloss.layout import subset_list

log = logging.getLogger(__name__)

METHOD = "iterative stratification after Sechidis et al. (2011), at exact size"


def _size(split: str, value: float) -> float | int:
    """A split's requested size, checked: a fraction in (0, 1] or an integer number of patches above 1."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InputError(f"data.subset.{split}: {value!r} is neither a fraction in (0, 1] nor a number of patches")
    if value <= 1:
        return float(value)
    if value != int(value):
        raise InputError(f"data.subset.{split}: {value!r} patches; above 1 the size is a number of patches, whole")
    return int(value)


@dataclass(frozen=True)
class Subset:
    """How much of each split a study keeps (``data.subset``): a fraction or a number of patches per split."""

    sizes: Mapping[str, float | int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 1.0))
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.sizes) - set(SPLITS))
        if unknown:
            raise InputError(f"data.subset: unknown split(s) {unknown}; the splits are {', '.join(SPLITS)}")
        object.__setattr__(self, "sizes", {split: _size(split, self.sizes.get(split, 1.0)) for split in SPLITS})

    @property
    def draws(self) -> bool:
        """Whether any split keeps less than its whole self (a size other than 1)."""
        return any(size != 1 for size in self.sizes.values())

    def target(self, split: str, available: int) -> int:
        """How many of a split's ``available`` patches the subset keeps."""
        size = self.sizes[split]
        if isinstance(size, float):
            return min(available, max(1, math.floor(size * available + 0.5))) if available else 0
        if size > available:
            log.warning("data.subset.%s asks for %d patches, but the split has %d: it keeps them all", split, size,
                        available)  # fmt: skip
        return min(size, available)

    def draw(self, table: pd.DataFrame) -> pd.DataFrame:
        """The label table's drawn rows, in its order (the whole table where nothing is drawn)."""
        if not self.draws:
            return table
        keep = np.zeros(len(table), bool)
        for split in SPLITS:
            rows = np.flatnonzero((table["split"] == split).to_numpy())
            labels = label_matrix(table["labels"].iloc[rows])
            rng = np.random.default_rng([self.seed, SPLITS.index(split)])
            keep[rows[stratified_choice(labels, self.target(split, len(rows)), rng)]] = True
        return table[keep].reset_index(drop=True)

    def describe(self, population: pd.DataFrame, drawn: pd.DataFrame) -> dict:
        """``summary.json``'s ``subset``: per split the size asked for, drawn and of, and per class the patches and
        share of the split before (``of``, ``share_of``) and after (``drawn``, ``share_drawn``) the draw."""
        splits = {}
        for split in SPLITS:
            before = label_matrix(population.loc[population["split"] == split, "labels"])
            after = label_matrix(drawn.loc[drawn["split"] == split, "labels"])
            per_class = {}
            for name, of, got in zip(classes(), before.sum(0).tolist(), after.sum(0).tolist(), strict=True):
                per_class[name] = {"of": of, "drawn": got, "share_of": _share(of, len(before)),
                                   "share_drawn": _share(got, len(after))}  # fmt: skip
            splits[split] = {"requested": self.sizes[split], "of": len(before), "drawn": len(after),
                             "classes": per_class}  # fmt: skip
        return {"seed": self.seed, "method": METHOD, "splits": splits}


def _share(count: int, total: int) -> float | None:
    return count / total if total else None


def label_matrix(labels: pd.Series) -> np.ndarray:
    """(n, 19) bool: which of the official classes each row's label list names."""
    index = {name: i for i, name in enumerate(classes())}
    matrix = np.zeros((len(labels), len(index)), bool)
    for row, names in enumerate(labels):
        matrix[row, [index[name] for name in names]] = True
    return matrix


def stratified_choice(labels: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices (ascending) of ``k`` of the rows of ``labels`` (n × classes, bool), drawn by iterative
    stratification, brought to exactly ``k`` rows and refined by swaps (see the module's docstring)."""
    n = len(labels)
    if not 0 <= k <= n:
        raise ValueError(f"cannot draw {k} of {n} rows")
    if k in (0, n):
        return np.arange(k)
    labels = np.asarray(labels, bool)
    labels = np.concatenate([labels, ~labels.any(1, keepdims=True)], axis=1)  # rows of no class: a class of theirs
    chosen = np.zeros(n, bool)
    undecided = np.ones(n, bool)
    wanted = labels.sum(0) * (k / n)  # each class's drawn rows, were its share kept exactly
    have = np.zeros(labels.shape[1], np.int64)
    remaining = labels.sum(0).astype(np.int64)  # undecided rows per class
    while (remaining > 0).any():
        c = int(np.argmin(np.where(remaining > 0, remaining, np.iinfo(np.int64).max)))  # ties: the lower class
        rows = rng.permutation(np.flatnonzero(undecided & labels[:, c]))
        take = int(np.clip(math.floor(wanted[c] - have[c] + 0.5), 0, len(rows)))
        chosen[rows[:take]] = True
        undecided[rows] = False
        have += labels[rows[:take]].sum(0)
        remaining -= labels[rows].sum(0)
    balance = _Balance(labels, wanted, rng)
    while (total := int(chosen.sum())) != k:  # one row out (too many) or in (too few) at a time
        row = balance.best(have, chosen if total > k else ~chosen, out=total > k)
        chosen[row] = total < k
        have += labels[row] if total < k else -labels[row].astype(np.int64)
    for _ in range(MAX_SWAPS):  # swap a drawn row for another while that brings the classes nearer their shares
        leaving = balance.best(have, chosen, out=True)
        after = have - labels[leaving]
        coming = balance.best(after, ~chosen, out=False)
        if balance.cost(after + labels[coming]) >= balance.cost(have):
            break
        chosen[leaving], chosen[coming] = False, True
        have = after + labels[coming]
    return np.flatnonzero(chosen)


#: At most this many swaps refine a draw (a few dozen suffice at BigEarthNet's size).
MAX_SWAPS = 1000


class _Balance:
    """The draw's objective, Σ_c (drawn_c − wanted_c)² / max(wanted_c, 1), and its best single move."""

    def __init__(self, labels: np.ndarray, wanted: np.ndarray, rng: np.random.Generator) -> None:
        self.labels = labels.astype(np.float64)
        self.wanted = wanted
        self.weight = 1 / np.maximum(wanted, 1)
        self.rng = rng

    def cost(self, have: np.ndarray) -> float:
        return float(((have - self.wanted) ** 2 * self.weight).sum())

    def best(self, have: np.ndarray, pool: np.ndarray, out: bool) -> int:
        """The row of ``pool`` (a mask) whose removal (``out``) or addition raises the cost least (ties: at random)."""
        sign = 1 if out else -1  # a row's labels l change the cost by Σ_c (l_c − 2 sign (have − wanted)_c l_c) w_c
        change = self.labels @ ((1 - 2 * sign * (have - self.wanted)) * self.weight)
        change[~pool] = np.inf
        return int(self.rng.choice(np.flatnonzero(change == change.min())))


def list_files(outdir: Path) -> dict[str, Path]:
    """The drawn patch lists in ``outdir`` (``labels/``), one per split."""
    return {split: Path(outdir) / subset_list(split) for split in SPLITS}


def write_lists(table: pd.DataFrame, paths: Mapping[str, Path]) -> None:
    """Each split's drawn patches in the official lists' format (usable as ``data.lists`` of a v1.0 study)."""
    for split, path in paths.items():
        write_list(path, table.loc[table["split"] == split, "patch"])
