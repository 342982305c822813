"""A small model trained on the demo, shared by the explanation tests."""

from __future__ import annotations

import numpy as np
import pytest

from benloss.data.synth import SynthConfig, make_demo_archive
from benloss.facts.nomenclature import classes, conversion, original_labels
from benloss.training.config import TrainConfig
from benloss.training.train import train

from ..support import demo_lists
from .support import model_path


def demo_reference_maps(masks_path, patches: list[str]) -> np.ndarray:
    """The demo's region masks (original label indices) as reference maps: class indices, 255 for none."""
    to_class = np.full(256, 255, dtype=np.uint8)
    for i, name in enumerate(original_labels()):
        if conversion()[name] is not None:
            to_class[i] = classes().index(conversion()[name])
    with np.load(masks_path) as masks:
        return np.stack([to_class[masks[name]] for name in patches])


@pytest.fixture(scope="session")
def trained_demo(tmp_path_factory):
    """A small CEL model trained on a 300-patch demo archive, the run folder around it, and the encoded test
    split's reference maps (written here from the demo's region masks where the encode stage does not)."""
    from benloss.data.encode import encode_archive
    from benloss.data.encoded import read_patch_names
    from benloss.data.labels import run_labels

    root = tmp_path_factory.mktemp("lrp")
    make_demo_archive(root / "archive", SynthConfig(patches=300, seed=11))
    run_labels(root / "archive/BigEarthNet-demo.tar.gz", demo_lists(root / "archive"), root / "labels")
    encode_archive(root / "archive/BigEarthNet-demo.tar.gz", root / "labels/patches.parquet",
                   root / "archive/band_statistics.csv", root / "encoded")  # fmt: skip
    maps = root / "encoded/test_reference_maps.npy"
    if not maps.exists():
        np.save(maps, demo_reference_maps(root / "archive/masks.npz", read_patch_names(root / "encoded", "test")))
    # A little weight decay (the study's default is none) gives this 6-epoch model the localised relevance the
    # test of relevance inside the class regions needs.
    config = TrainConfig(loss="cel", width=32, epochs=6, batch_size=16, lr=1e-3, threads=2, weight_decay=2e-5)
    history = train(config, root / "encoded", root / "labels/class_counts.csv", model_path(root).parent)
    return root, history
