"""The data stage in one pass over the archive: the label table and the encoded arrays together.

A patch's label metadata and its bands sit side by side in the archive, so one stream yields both: bands
are written into rows reserved for every listed, non-excluded patch, and rows whose patch the label table
drops (no BigEarthNet-19 label, absent from the archive where that is allowed, left out of a subset) are
compacted away at the end. Without a subset or absent patches, the outputs equal those of the label stage
followed by the encoder, byte for byte, in half the reading.
"""

from __future__ import annotations

import logging
from pathlib import Path

from benloss.atomic import atomic_outputs
from benloss.data.encode import encode_pass
from benloss.data.labels import label_files, require_table_space, write_label_files
from benloss.data.selection import EVERYTHING, Selection
from benloss.data.sources import Source
from benloss.data.subset import list_files, write_lists

log = logging.getLogger(__name__)


def prepare(source: Source, labels_dir: Path, encoded_dir: Path, selection: Selection = EVERYTHING) -> dict:
    """Write the label stage's files into ``labels_dir`` and the encoded arrays into ``encoded_dir``.

    ``selection`` keeps a subset of each split and says whether patches the archive lacks may drop
    (``benloss.data.selection``); with a subset, ``labels_dir`` also gets each split's drawn patch list. The label
    table, its class counts and the encoded arrays hold the kept patches only. Nothing is in place until all is
    complete: a failure leaves nothing.
    """
    require_table_space(source, labels_dir)
    labeller = source.labeller()
    lists = list_files(labels_dir) if selection.subset.draws else {}
    outputs = (*label_files(labels_dir), *lists.values(), Path(encoded_dir))
    with atomic_outputs(*outputs) as (*label_paths, encoded_tmp):
        table, summary, meta = encode_pass(source, labeller, encoded_tmp, Path(encoded_dir), selection)
        summary = write_label_files(source, table, summary, tuple(label_paths[:3]))
        write_lists(table, dict(zip(lists, label_paths[3:], strict=True)))
    log.info("encoded %s patches into %s", meta["splits"], encoded_dir)
    return summary
