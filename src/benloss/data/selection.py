"""Which listed patches a study keeps: those the archive holds, and of those a subset per split.

* **Patches the archive lacks** (``data.allow_missing``): a patch that the lists or the metadata name but the
  archive does not hold stops the data stage with an error that names the archive and counts them per split,
  and nothing is written; where missing patches are allowed they are dropped and counted per split instead
  (``listed_but_absent`` of ``summary.json``), and a split left with none stops the stage naming it. A patch
  whose reference map is absent keeps its row; where missing patches are allowed its map reads "no class"
  (255) everywhere, which leaves it out of the explanation scores (they only draw a patch whose map shows the
  class), and such patches are counted per split (``reference_maps_absent``).
* **A subset** (``data.subset``, ``benloss.data.subset``) is drawn from the patches present: the same subset
  whether it is drawn before the pass (where the labels are known before it and no patch may be missing, only
  the drawn patches are decoded) or after it (rows of the undrawn patches are written, then compacted away).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from benloss.data.subset import Subset
from benloss.errors import InputError
from benloss.facts.splits import SPLITS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    """The study's choice among the listed patches: a subset per split, and whether absent patches drop."""

    subset: Subset = field(default_factory=Subset)
    allow_missing: bool = False

    def draws_before_the_pass(self, labels_known: bool) -> bool:
        """Whether the subset can be drawn before the archive is read: only where the labels are known up front
        and every listed patch must be present (otherwise the patches present are known only after the pass)."""
        return self.subset.draws and labels_known and not self.allow_missing


#: The default: every listed patch, each of them required.
EVERYTHING = Selection()


def absent_by_split(candidates: Mapping[str, list[str]], present: set[str]) -> dict[str, list[str]]:
    """Per split, in order, the candidates the archive did not hold."""
    return {split: [name for name in candidates.get(split, []) if name not in present] for split in SPLITS}


def settle_absent(where: Path, absent: Mapping[str, list[str]], allow: bool, consequence: str) -> dict[str, int]:
    """Stop with an error naming ``where`` if anything is absent and that is not allowed; else log and count.

    ``consequence`` says what becomes of the absent patches where they are allowed (for the error's hint).
    """
    counts = {split: len(absent.get(split, [])) for split in SPLITS}
    total = sum(counts.values())
    if total and not allow:
        first = min(name for names in absent.values() for name in names)
        per_split = ", ".join(f"{split} {count:,}" for split, count in counts.items())
        raise InputError(
            f"{where}: {total:,} labelled patch(es) not found in the archive ({per_split}), e.g. {first}; "
            f"with data.allow_missing: true (prepare --allow-missing) {consequence}"
        )
    if total:
        log.warning("%s lacks %d labelled patch(es): %s", where, total, counts)
    return counts


def require_every_split(archive: Path, listed: Mapping[str, int], present: Mapping[str, int]) -> None:
    """Stop, naming the split, where the archive holds none of a split's listed patches."""
    for split in SPLITS:
        if listed.get(split, 0) and not present.get(split, 0):
            raise InputError(
                f"{archive}: none of the {listed[split]:,} {split} patches that the lists or the metadata name is "
                f"in the archive; a study needs patches in every split (train, val, test)"
            )
