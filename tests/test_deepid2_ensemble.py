"""DeepID2's multi-patch system: the stacked nets against separate nets, the greedy selection,
and the selecting verifier, which must never use the test fold."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facebench.components import FEATURE, FaceData
from facebench.config import ConfigError
from facebench.nn.local import LocallyConnected2d
from facebench.protocols.benchmark import EvalUnit, PairFold, PairsBenchmark
from facebench.protocols.pairs import PairsProtocol
from facebench_plugins.deepid2.ensemble import DeepID2Ensemble, DeepID2EnsembleConfig, PatchConfig, crop_patch
from facebench_plugins.deepid2.fusion import EnsembleVerifierConfig, PatchEnsembleVerifier, patch_columns
from facebench_plugins.deepid2.loss import DeepID2Loss, DeepID2LossConfig, MarginConfig
from facebench_plugins.deepid2.selection import forward_backward_select
from facebench_plugins.deepid2 import stacked
from facebench_plugins.deepid2.stacked import BatchedLocal

SMALL = dict(widths=[4, 6, 6, 8], feature_dim=12)
PATCHES = [
    PatchConfig("face", [0, 0, 96, 112], 55, 47, 3),
    PatchConfig("eyes", [8, 14, 88, 94], 47, 47, 3),
    PatchConfig("inner", [10, 12, 86, 101], 55, 47, 3),  # same geometry as "face": one stacked group
    PatchConfig("mouth", [24, 64, 72, 112], 47, 47, 1),
]


@pytest.mark.parametrize("net_by_net", [True, False], ids=["net-by-net trunk (CPU)", "stacked batch (GPU)"])
@pytest.mark.parametrize("batchnorm, conv3_sharing", [(False, "blocks"), (True, "blocks"), (True, "none")])
def test_stacked_forward_and_gradients_equal_separate_nets(batchnorm, conv3_sharing, net_by_net, monkeypatch):
    monkeypatch.setattr(stacked, "runs_net_by_net", lambda device: net_by_net)
    torch.manual_seed(0)
    cfg = DeepID2EnsembleConfig(patches=PATCHES, batchnorm=batchnorm, conv3_sharing=conv3_sharing, **SMALL)
    ensemble = DeepID2Ensemble(cfg).double()
    assert ensemble.input_shape == (3, 112, 96) and ensemble.feature_dim == 4 * 12
    assert len(ensemble.groups) == 3  # (3, 55, 47) x 2, (3, 47, 47), (1, 47, 47)
    x = torch.rand(5, 3, 112, 96, dtype=torch.float64) * 2 - 1
    nets = [ensemble.patch_net(i) for i in range(4)]  # float64: compared without round-off noise
    ensemble.train()
    feature = ensemble(x)[FEATURE]
    weights = torch.randn_like(feature)
    (feature * weights).sum().backward()
    for i, net in enumerate(nets):
        net.train()
        alone = net(crop_patch(x, PATCHES[i]))[FEATURE]
        torch.testing.assert_close(feature[:, i * 12 : (i + 1) * 12], alone, rtol=1e-9, atol=1e-11)
        (alone * weights[:, i * 12 : (i + 1) * 12]).sum().backward()
    # Gradients reach each net's own slice of the stacked parameters only.
    for group, members in zip(ensemble.groups, ensemble.members):
        for k, i in enumerate(members):
            torch.testing.assert_close(group.conv4[0].weight.grad[k], nets[i].conv4[0].weight.grad, rtol=1e-9, atol=1e-11)
            o = nets[i].stage1[0].out_channels
            torch.testing.assert_close(group.stage1[0].weight.grad[k * o : (k + 1) * o], nets[i].stage1[0].weight.grad, rtol=1e-9, atol=1e-11)
            torch.testing.assert_close(group.fc.weight.grad[k], nets[i].fc.weight.grad, rtol=1e-9, atol=1e-11)
    ensemble.eval()
    torch.testing.assert_close(ensemble(x)[FEATURE][:, 36:], ensemble.patch_net(3).eval()(crop_patch(x, PATCHES[3]))[FEATURE])
    if batchnorm:  # each net's running statistics and batch count, as its lone twin's
        for group, members in zip(ensemble.groups, ensemble.members):
            for k, i in enumerate(members):
                twin = group.net(k)
                for key in ("stage1.1.running_mean", "stage2.1.running_var", "stage2.1.num_batches_tracked"):
                    torch.testing.assert_close(twin.state_dict()[key], nets[i].state_dict()[key], rtol=1e-9, atol=1e-11)


def test_crop_patch_cuts_the_box_and_converts_to_grey():
    x = torch.arange(2 * 3 * 112 * 96, dtype=torch.float32).view(2, 3, 112, 96)
    same_size = crop_patch(x, PatchConfig("p", [10, 20, 57, 75], 55, 47, 3))
    assert torch.equal(same_size, x[:, :, 20:75, 10:57])
    grey = crop_patch(x, PatchConfig("g", [10, 20, 57, 75], 55, 47, 1))
    torch.testing.assert_close(grey[:, 0], 0.299 * x[:, 0, 20:75, 10:57] + 0.587 * x[:, 1, 20:75, 10:57] + 0.114 * x[:, 2, 20:75, 10:57])
    assert crop_patch(x, PATCHES[1]).shape == (2, 3, 47, 47)


def test_ensemble_loss_is_the_sum_of_each_nets_own_signal():
    torch.manual_seed(0)
    cfg = DeepID2LossConfig(net_dim=4, pairs="all", margin=MarginConfig("fixed", 1.0))
    loss = DeepID2Loss(3 * 4, 5, cfg)
    assert loss.nets == 3 and loss.head_weight.shape == (3, 5, 4) and loss.margin.value.shape == (3,)
    f = torch.rand(8, 12)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    out = loss({FEATURE: f}, labels)
    ce, ver = 0.0, 0.0
    for r in range(3):
        block = f[:, 4 * r : 4 * (r + 1)]
        single = DeepID2Loss(4, 5, DeepID2LossConfig(pairs="all", margin=MarginConfig("fixed", 1.0)))
        single.head_weight.data, single.head_bias.data = loss.head_weight[r : r + 1].clone(), loss.head_bias[r : r + 1].clone()
        alone = single({FEATURE: block}, labels)
        ce += alone.terms["identification"].item()
        ver += alone.terms["verification"].item()
    assert out.terms["identification"].item() == pytest.approx(ce, rel=1e-5)
    assert out.terms["verification"].item() == pytest.approx(ver, rel=1e-5)
    with pytest.raises(ConfigError, match="net_dim"):
        DeepID2Loss(10, 5, DeepID2LossConfig(net_dim=4))


# --- greedy forward-backward selection ------------------------------------------------------

TABLE = {
    (0,): 0.6, (1,): 0.5, (2,): 0.5, (3,): 0.1,
    (0, 1): 0.7, (0, 2): 0.65, (0, 3): 0.6, (1, 2): 0.9, (1, 3): 0.5, (2, 3): 0.5,
    (0, 1, 2): 0.8, (1, 2, 3): 0.95, (0, 1, 3): 0.7, (0, 2, 3): 0.6, (0, 1, 2, 3): 0.85,
}


def test_forward_backward_selection_drops_an_early_pick():
    # Forward alone: 0, then 1 (0.7), then 2 (0.8) -> {0, 1, 2}. The backward step finds {1, 2}
    # (0.9) better than the best pair so far (0.7) and drops 0; forward then adds 3 (0.95).
    chosen = forward_backward_select(lambda s: (TABLE[s],), [0, 1, 2, 3], 3)
    assert sorted(chosen) == [1, 2, 3]
    assert forward_backward_select(lambda s: (TABLE[s],), [0, 1, 2, 3], 1) == [0]


# --- the selecting verifier -----------------------------------------------------------------


def two_patch_features(rng: np.random.Generator, people: int, per: int, informative: int, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """Features of 2 patches x 4 dims: patch ``informative`` carries identity, the other is noise."""
    labels = np.repeat(np.arange(people), per)
    x = rng.normal(size=(len(labels), 8))
    x[:, informative * 4 : (informative + 1) * 4] += strength * rng.normal(size=(people, 4))[labels]
    return x, labels


def make_bench(rng: np.random.Generator) -> tuple[PairsBenchmark, np.ndarray]:
    """Fold 0 (training people): only patch 0 tells people apart. Fold 1 (test people, more of
    them and more clearly): only patch 1 does. Pooled, patch 1 would win the selection."""
    x_train, y_train = two_patch_features(rng, 30, 4, informative=0, strength=1.5)
    x_test, y_test = two_patch_features(rng, 80, 4, informative=1, strength=4.0)
    features = np.concatenate([x_train, x_test])
    labels = np.concatenate([y_train, y_test + 30])
    names = [f"p{k}" for k in range(110)]
    faces = FaceData(np.zeros((len(labels), 1, 1, 3), np.uint8), labels, names, [f"i{k}" for k in range(len(labels))])

    def fold(people: range, name: str) -> PairFold:
        idx = np.flatnonzero(np.isin(labels, list(people)))
        same = [(a, b) for a in idx for b in idx if a < b and labels[a] == labels[b]][:40]
        diff = [(a, b) for a in idx[::3] for b in idx[1::5] if labels[a] != labels[b]][:40]
        return PairFold(name, np.array(same + diff), np.repeat([True, False], [len(same), len(diff)]), [names[p] for p in people])

    folds = [fold(range(30), "train"), fold(range(30, 110), "test")]
    return PairsBenchmark("toy", faces, folds, [EvalUnit("u", test=1, train=[0])]), features


def selecting_verifier(**kw) -> PatchEnsembleVerifier:
    cfg = EnsembleVerifierConfig(block_dim=4, features_flip="none", pca_dim=None, select=1, sets=1, pairs=300, ridge=1e-3)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return PatchEnsembleVerifier(cfg)


def test_selection_never_touches_the_test_fold():
    bench, features = make_bench(np.random.default_rng(0))
    # Control: a selection that could see the test people (fitted on everyone) picks patch 1.
    pooled = selecting_verifier().fit(features, bench.faces.labels)
    assert pooled.sets_ == [[1]]
    # Through the protocol the verifier is fitted on the training fold's people only: patch 0.
    verifier = selecting_verifier()
    PairsProtocol().evaluate_unit(bench, bench.units[0], features, verifier)
    assert verifier.sets_ == [[0]]


def test_svm_fusion_scores_state_and_layout():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(40), 4)
    x = rng.normal(size=(160, 4 * 3 * 2)) + np.tile(rng.normal(size=(40, 12)), 2)[labels]  # 4 patches x 3 dims, flip concat
    cfg = dict(block_dim=3, features_flip="concat", select=1, sets=2, pairs=200)
    verifier = selecting_verifier(**cfg).fit(x, labels)
    assert len(verifier.sets_) == 2 and not set(verifier.sets_[0]) & set(verifier.sets_[1])
    a, b = x[:20], x[20:45]
    np.testing.assert_allclose(np.diag(verifier.score_matrix(a, a[::-1])), verifier.score(a, a[::-1]), rtol=1e-9, atol=1e-9)
    restored = selecting_verifier(**cfg).load_state(verifier.state())
    np.testing.assert_allclose(restored.score_matrix(a, b), verifier.score_matrix(a, b))
    columns = patch_columns(24, 3, True)
    assert columns[1].tolist() == [3, 4, 5, 15, 16, 17]
    with pytest.raises(ConfigError, match="select"):
        selecting_verifier(block_dim=3, features_flip="concat", select=3, sets=2).fit(x, labels)


def test_fit_report_lists_every_single_patch_and_the_selected_sets():
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(40), 4)
    identity = rng.normal(size=(40, 12))
    identity[:, 6:9] *= 3.0  # patch 2 carries the most identity signal
    x = identity[labels] + rng.normal(size=(160, 12))
    verifier = selecting_verifier(block_dim=3, features_flip="none", select=2, sets=1, pairs=200).fit(x, labels)
    report = verifier.fit_report()
    assert [e["patches"] for e in report["single_patches"]] == [[0], [1], [2], [3]]
    assert report["best_single_patch"]["patches"] == [2]
    assert [e["patches"] for e in report["selected_sets"]] == [sorted(verifier.sets_[0])]
    assert report["heldout_pairs"] == 400 and report["svm_fusion"] is False
    # The numbers are the held-out scores the selection used, not recomputed ones.
    single = report["single_patches"][2]
    assert (single["accuracy"], single["auc"]) == verifier.heldout_[(2,)]


def test_pca_dims_picks_each_sets_size_on_held_out_pairs():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(60), 4)
    x = rng.normal(size=(60, 12))[labels] + 0.7 * rng.normal(size=(240, 12))  # identity in every dimension
    verifier = selecting_verifier(block_dim=3, features_flip="none", select=2, sets=1, pairs=200, pca_dims=[1, 6])
    verifier.fit(x, labels)
    report = verifier.fit_report()["selected_sets"][0]
    by_dim = report["by_pca_dim"]
    assert sorted(by_dim) == [1, 6] and by_dim[6]["accuracy"] > by_dim[1]["accuracy"]
    assert verifier.set_dims_ == [6] == [report["pca_dim"]]
    assert verifier.models[0]._components.shape[0] == 6  # the final fit uses the chosen size
    with pytest.raises(ConfigError, match="pca_dims"):
        selecting_verifier(pca_dims=[])


@pytest.mark.parametrize("kwargs", [{"block": 2}, {"block": 2, "in_size": (6, 4)}, {}])
def test_batched_local_equals_separate_layers(kwargs):
    """Equal blocks (4x4 output in 2x2 blocks), uneven ones (5x3) and unshared positions."""
    torch.manual_seed(0)
    in_size = kwargs.pop("in_size", (5, 5))
    layers = [LocallyConnected2d(3, 4, in_size, 2, **kwargs).double() for _ in range(3)]
    batched = BatchedLocal(layers)
    x = torch.randn(3 * 2, 3, *in_size, dtype=torch.float64, requires_grad=True)
    y = batched(x)
    weights = torch.randn_like(y)
    grads = torch.autograd.grad((y * weights).sum(), [x, batched.weight, batched.bias])
    for g, layer in enumerate(layers):
        rows = slice(2 * g, 2 * g + 2)
        xg = x.detach()[rows].clone().requires_grad_()
        alone = layer(xg)
        torch.testing.assert_close(y[rows], alone, rtol=1e-9, atol=1e-11)
        expected = torch.autograd.grad((alone * weights[rows]).sum(), [xg, layer.weight, layer.bias])
        for got, want in zip((grads[0][rows], grads[1][g], grads[2][g]), expected):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)
