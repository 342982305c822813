"""One model's landscape end to end on the demo's encoded arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benloss.errors import InputError
from benloss.facts.bands import read_band_statistics
from benloss.landscape.directions import flatten, perturbed_names
from benloss.landscape.landscape import read_landscape, read_trajectory, write_landscape
from benloss.layout import ENCODED_FILES, LANDSCAPE_FILES, MODEL_FILES, SNAPSHOTS
from benloss.training.batches import EncodedSplit
from benloss.training.losses import build_loss
from benloss.training.models import BandNormalizer
from benloss.training.train import class_counts_from_csv, load_model

#: Four of the demo's 21 training images and three Lanczos steps keep the run at a few seconds.
SETTINGS = {"grid": 5, "images": 4, "iterations": 3, "radius": 0.5, "seed": 0}


@pytest.fixture(scope="module")
def written(trained, demo_encoded, demo_labels, tmp_path_factory):
    out = tmp_path_factory.mktemp("landscape")
    snapshots = sorted((trained / SNAPSHOTS).iterdir())
    summary = write_landscape(trained / MODEL_FILES["model"], snapshots, demo_encoded,
                              demo_labels / "class_counts.csv", out, **SETTINGS)  # fmt: skip
    return out, summary


def independent_centre_loss(trained, demo_encoded, demo_labels) -> float:
    """CEL of the trained model on the images the landscape promises: four training rows drawn with the seed."""
    split = EncodedSplit(demo_encoded, "train")
    rows = np.sort(np.random.default_rng([0]).choice(split.n_images, size=4, replace=False))
    batch = split.gather(rows)
    model, config = load_model(trained / MODEL_FILES["model"])
    normalizer = BandNormalizer(read_band_statistics(demo_encoded / ENCODED_FILES["band_statistics"]))
    loss = build_loss(config.loss, class_counts=class_counts_from_csv(demo_labels / "class_counts.csv"),
                      n_images=split.n_images)  # fmt: skip
    with torch.no_grad():
        return float(loss(model(*normalizer(batch)), batch["labels"]))


def test_the_landscapes_centre_is_the_trained_models_loss(written, trained, demo_encoded, demo_labels):
    out, summary = written
    landscape = read_landscape(out / LANDSCAPE_FILES["arrays"], out / LANDSCAPE_FILES["summary"])
    expected = independent_centre_loss(trained, demo_encoded, demo_labels)
    assert landscape.arrays["random_loss"][2, 2] == pytest.approx(expected, rel=1e-5)
    assert landscape.arrays["pca_loss"][2, 2] == pytest.approx(expected, rel=1e-5)
    assert summary["centre"]["loss"] == pytest.approx(expected, rel=1e-5)


def test_the_files_hold_every_array_and_number(written):
    out, summary = written
    arrays = read_landscape(out / LANDSCAPE_FILES["arrays"], out / LANDSCAPE_FILES["summary"]).arrays
    for prefix in ("random", "pca"):
        assert arrays[f"{prefix}_x"].shape == arrays[f"{prefix}_y"].shape == (5,)
        for metric in ("loss", "f1_samples", "map_macro"):
            assert arrays[f"{prefix}_{metric}"].shape == (5, 5)
    assert arrays["slice_loss"].shape == (2, len(arrays["slice_coordinates"]))
    assert {-0.5, 0.0, 0.5} <= set(arrays["slice_coordinates"])
    assert arrays["trajectory"].shape == (3, 2) and np.array_equal(arrays["trajectory_epochs"], [1, 2, 3])
    assert np.array_equal(arrays["trajectory"][-1], [0, 0])
    assert json.loads((out / LANDSCAPE_FILES["summary"]).read_text()) == json.loads(json.dumps(summary))
    assert summary["images"] == 4 and summary["settings"]["grid"] == 5
    assert summary["lambda_max"] >= summary["lambda_min"]
    assert summary["eigenvalue_ratio"] == pytest.approx(abs(summary["lambda_min"] / summary["lambda_max"]))
    assert 0 <= summary["convex_share_random"] <= 1 and 0 <= summary["convex_share_pca"] <= 1
    assert sum(summary["explained"]) == pytest.approx(1.0)  # the snapshots were moved within a plane
    assert set(summary["seconds"]) == {"trajectory", "pca_surface", "random_surface", "slices", "hessian", "total"}


def test_fewer_than_two_snapshots_besides_the_final_model_fail_naming_the_folder(trained, demo_encoded,
                                                                                 demo_labels, tmp_path):  # fmt: skip
    snapshots = sorted((trained / SNAPSHOTS).iterdir())[1:]  # epoch 2 and the final weights
    with pytest.raises(InputError, match=f"{trained / SNAPSHOTS}.*found 1"):
        write_landscape(trained / MODEL_FILES["model"], snapshots, demo_encoded, demo_labels / "class_counts.csv",
                        tmp_path, **SETTINGS)  # fmt: skip
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("grid", [2, 4])
def test_a_grid_without_a_centre_is_refused(grid, trained, demo_encoded, demo_labels, tmp_path):
    with pytest.raises(InputError, match="grid"):
        write_landscape(trained / MODEL_FILES["model"], [], demo_encoded, demo_labels / "class_counts.csv", tmp_path,
                        grid=grid)  # fmt: skip


def test_a_missing_snapshot_is_named(trained, demo_encoded, demo_labels, tmp_path):
    missing = trained / SNAPSHOTS / "epoch009.pt"
    with pytest.raises(InputError, match=r"epoch009\.pt"):
        write_landscape(trained / MODEL_FILES["model"], [missing], demo_encoded, demo_labels / "class_counts.csv",
                        tmp_path)  # fmt: skip


def test_a_missing_model_is_named(trained, demo_encoded, demo_labels, tmp_path):
    with pytest.raises(InputError, match=r"nowhere/model\.pt"):
        write_landscape(tmp_path / "nowhere" / "model.pt", [], demo_encoded, demo_labels / "class_counts.csv", tmp_path)


def test_the_trajectory_is_read_in_epoch_order_and_ends_at_the_final_weights(trained):
    model, _ = load_model(trained / MODEL_FILES["model"])
    final, names = model.state_dict(), perturbed_names(model)
    first, second, last = sorted((trained / SNAPSHOTS).iterdir())
    epochs, rows = read_trajectory([last, second, first], final, names, 3, trained / SNAPSHOTS)
    assert list(epochs) == [1, 2, 3] and not rows[-1].any() and rows[0].any()
    expected = flatten(torch.load(first, weights_only=True)["state_dict"], names) - flatten(final, names)
    assert torch.equal(rows[0], expected)
    epochs, rows = read_trajectory([second, first], final, names, 3, trained / SNAPSHOTS)  # the final appended
    assert list(epochs) == [1, 2, 3] and not rows[-1].any() and len(rows) == 3
