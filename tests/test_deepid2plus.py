"""DeepID2+: the net's sizes, the joint signal on every supervised output, the sparsity report."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facebench.components import FEATURE
from facebench_plugins.deepid2.loss import MarginConfig
from facebench_plugins.deepid2plus import (
    DeepID2PlusLoss,
    DeepID2PlusLossConfig,
    DeepID2PlusNet,
    DeepID2PlusNetConfig,
)
from facebench_plugins.analyses.sparsity import sparsity_report


def test_paper_sizes():
    cfg = DeepID2PlusNetConfig()
    assert (cfg.widths, cfg.feature_dim, cfg.side_dim) == ([128] * 4, 512, 512)
    out = DeepID2PlusNet(cfg)(torch.randn(2, 3, 55, 47))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "feature": (2, 512), "stage1": (2, 512), "stage2": (2, 512), "stage3": (2, 512)
    }


def test_every_output_gets_its_own_joint_signal():
    torch.manual_seed(0)
    cfg = DeepID2PlusLossConfig(side_dim=6, side_weight=0.5, margin=MarginConfig("fixed", 1.0))
    loss = DeepID2PlusLoss(8, 4, cfg)
    outputs = {FEATURE: torch.rand(8, 8), **{f"stage{i}": torch.rand(8, 6) for i in (1, 2, 3)}}
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    out = loss(outputs, labels)
    assert set(out.terms) == {f"{o}_{t}" for o in ("top", "stage1", "stage2", "stage3") for t in ("identification", "verification")}
    assert "stage2_margin" in out.metrics and "top_train_id_accuracy" in out.metrics
    side = loss.signals["stage1"]({FEATURE: outputs["stage1"]}, labels)
    assert out.terms["stage1_identification"].item() == pytest.approx(0.5 * side.terms["identification"].item())
    with pytest.raises(KeyError, match="stage1"):
        loss({FEATURE: outputs[FEATURE]}, labels)


def test_sparsity_report_splits_flip_halves_into_images():
    # Two rows of [face | mirror], 2 neurons: images 10, 11, 00, 01.
    features = np.array([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 2.0]])
    report = sparsity_report(features, neurons=2)
    assert report["flip_halves_split"] and report["images"] == 4 and report["neurons"] == 2
    assert report["active_neurons_per_image_mean"] == pytest.approx(0.5)
    assert report["active_neurons_per_image_std"] == pytest.approx(np.std([0.5, 1.0, 0.0, 0.5]))
    assert report["images_per_neuron_mean"] == pytest.approx(0.5) and report["images_per_neuron_std"] == 0.0
    assert report["dead_neurons"] == 0
    assert not sparsity_report(features, neurons=4)["flip_halves_split"]
