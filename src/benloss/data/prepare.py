"""The data stage in one pass over the archive: the label table and the encoded arrays together.

A patch's label metadata and its bands sit side by side in the archive, so one stream yields both: bands
are written into rows reserved for every listed, non-excluded patch, and rows whose patch the label table
drops (no BigEarthNet-19 label, absent from the archive) are compacted away at the end. The outputs equal
those of the label stage followed by the encoder, byte for byte, in half the reading.
"""

from __future__ import annotations

import logging
from pathlib import Path

from benloss.atomic import atomic_outputs
from benloss.data.encode import encode_pass
from benloss.data.labels import label_files, require_table_space, write_label_files
from benloss.data.sources import Source

log = logging.getLogger(__name__)


def prepare(source: Source, labels_dir: Path, encoded_dir: Path) -> dict:
    """Write the label stage's files into ``labels_dir`` and the encoded arrays into ``encoded_dir``.

    Nothing is in place until both are complete: a failure leaves neither.
    """
    require_table_space(source, labels_dir)
    labeller = source.labeller()
    with atomic_outputs(*label_files(labels_dir), Path(encoded_dir)) as (*label_paths, encoded_tmp):
        table, summary, meta = encode_pass(source, labeller, encoded_tmp, Path(encoded_dir))
        summary = write_label_files(source, table, summary, tuple(label_paths))
    log.info("encoded %s patches into %s", meta["splits"], encoded_dir)
    return summary
