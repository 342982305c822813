"""The architectures: shapes and parameter counts against timm's and torchvision's own, the stacked input against
torch's nearest-neighbour interpolation, and every architecture trained, resumed and evaluated on the tiny data."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision

from benloss.architectures import ARCHITECTURE_IDS, architecture
from benloss.architectures.build import build_model
from benloss.architectures.stacked import stack_bands
from benloss.errors import InputError
from benloss.evaluation.evaluate import evaluate
from benloss.facts.bands import BAND_GROUPS, BANDS
from benloss.training.models import KBranchCNN, count_parameters
from benloss.training.train import load_model, train

from ..training.support import config, deterministic, train_until_crash

TIMM_ARCHITECTURES = [a for a in ARCHITECTURE_IDS if architecture(a).timm_name]


def groups(n: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, len(g.bands), g.size, g.size, generator=generator) for g in BAND_GROUPS)


@pytest.mark.parametrize("architecture_id", TIMM_ARCHITECTURES)
def test_timm_backbones_have_timms_shapes_and_parameters(architecture_id):
    entry = architecture(architecture_id)
    torch.manual_seed(0)
    ours = build_model(architecture_id, 8, 19).eval()
    torch.manual_seed(0)
    theirs = timm.create_model(entry.timm_name, pretrained=False, in_chans=12, num_classes=19, **entry.timm_kwargs)
    assert count_parameters(ours) == count_parameters(theirs)
    inputs = groups(2)
    with torch.no_grad():
        assert ours(*inputs).shape == (2, 19)
        # Same initialisation under the same seed: the wrapper adds nothing but the stacking.
        torch.testing.assert_close(ours(*inputs), theirs.eval()(stack_bands(*inputs)))


def test_resnet50_has_torchvisions_parameter_count():
    reference = torchvision.models.resnet50(num_classes=19)
    reference.conv1 = torch.nn.Conv2d(len(BANDS), 64, 7, 2, 3, bias=False)
    # Hand-computed from ResNet-50's 25,557,032 (3 bands, 1000 classes): a 19-way head and 12-band stem.
    by_hand = 25_557_032 - (2048 * 1000 + 1000) + (2048 * 19 + 19) + (len(BANDS) - 3) * 64 * 7 * 7
    assert count_parameters(build_model("resnet50", 8, 19)) == count_parameters(reference) == by_hand


def test_kbranch_is_the_paper_model():
    assert count_parameters(build_model("kbranch", 16, 19)) == count_parameters(KBranchCNN(16, 19))


def test_stacked_bands_are_nearest_neighbour_upsampled_and_keep_band_statistics():
    inputs = groups(3, seed=1)
    stacked = stack_bands(*inputs)
    assert stacked.shape == (3, len(BANDS), 120, 120)
    reference = torch.cat([F.interpolate(x, size=(120, 120), mode="nearest") for x in inputs], dim=1)
    torch.testing.assert_close(stacked, reference, rtol=0, atol=0)
    channel = 0
    for x in inputs:
        for band in range(x.shape[1]):
            native, upsampled = x[:, band].double(), stacked[:, channel].double()
            assert float(upsampled.mean()) == pytest.approx(float(native.mean()), abs=1e-12)
            assert float(upsampled.std(correction=0)) == pytest.approx(float(native.std(correction=0)), rel=1e-9)
            channel += 1


def test_unknown_architecture_names_the_choices():
    with pytest.raises(InputError, match=r"unknown architecture 'vgg'.*kbranch, resnet18"):
        build_model("vgg", 8, 19)


def test_importing_the_registry_needs_neither_torch_nor_numpy():
    import subprocess

    code = "import sys, benloss.architectures; assert not {'torch', 'numpy'} & set(sys.modules), 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_input_layers_name_real_layers_reading_the_groups_in_channel_order():
    for architecture_id in ARCHITECTURE_IDS:
        model = build_model(architecture_id, 8, 19)
        for layer, read in architecture(architecture_id).input_layers.items():
            channels = sum(len(g.bands) for g in BAND_GROUPS if g.name in read)
            assert model.get_submodule(layer).in_channels == channels, (architecture_id, layer)


@pytest.mark.parametrize("architecture_id", ARCHITECTURE_IDS)
def test_every_architecture_trains_resumes_exactly_and_evaluates(
    architecture_id, demo_encoded, demo_labels, tmp_path, monkeypatch
):
    counts = demo_labels / "class_counts.csv"
    run = config(architecture=architecture_id, loss="cel", epochs=2, batch_size=16, threads=2)
    reference = train(run, demo_encoded, counts, tmp_path / "straight")
    train_until_crash(run, 2, demo_encoded, counts, tmp_path / "resumed", monkeypatch)
    resumed = train(run, demo_encoded, counts, tmp_path / "resumed")
    pd.testing.assert_frame_equal(deterministic(resumed), deterministic(reference), check_exact=True)
    first, second = (torch.load(tmp_path / name / "model.pt", weights_only=False)["state_dict"]
                     for name in ("straight", "resumed"))  # fmt: skip
    assert all(torch.equal(first[k], second[k]) for k in first)
    model, loaded = load_model(tmp_path / "straight" / "model.pt")
    assert loaded.architecture == architecture_id and count_parameters(model) == count_parameters(
        build_model(architecture_id, 8, 19)
    )
    assert json.loads((tmp_path / "straight" / "run.json").read_text())["architecture"] == architecture_id
    evaluate(tmp_path / "straight" / "model.pt", tmp_path / "straight" / "val_scores.npy", demo_encoded,
             tmp_path / "eval")  # fmt: skip
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert 0 <= metrics["own_rule"]["f1_samples"] <= 1
    assert np.load(tmp_path / "eval" / "test_scores.npy").shape[1] == 19


def test_the_config_schema_offers_exactly_the_registrys_architectures():
    import yaml

    from ..support import ROOT

    model = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())["properties"]["model"]
    properties = model["properties"]
    assert properties["architectures"]["items"]["enum"] == list(ARCHITECTURE_IDS)
    assert (
        list(properties["recipes"]["properties"])
        == list(properties["resources"]["properties"])
        == list(ARCHITECTURE_IDS)
    )
    assert properties["architectures"]["default"] == ["kbranch"]
