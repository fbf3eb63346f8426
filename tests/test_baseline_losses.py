"""The baseline plugins (margins, FaceNet, contrastive, DeepFace, timm, VGG-Face) against
computations written out here, independently of the plugin code, and every baseline preset
end to end on TINY settings."""
from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY
from facebench.components import FEATURE, BuildContext
from facebench.config import ConfigError, compose
from facebench.run import execute
from facebench_plugins.contrastive import ContrastiveLoss, pair_losses
from facebench_plugins.deepface import DeepFaceConfig, DeepFaceNet, deepface_shapes
from facebench.mining import batch_hard, semihard_negatives, squared_distances
from facebench_plugins.facenet import TripletLoss
from facebench_plugins.margins import (
    ArcFaceConfig,
    CenterLoss,
    CosFaceConfig,
    arcface_logits,
    build_arcface,
    build_cosface,
    cosface_logits,
)
from facebench_plugins.timm_backbones import TimmConfig, build_timm
from facebench_plugins.vggface import VggFaceBackboneConfig, build_vggface_backbone

# --- FaceNet mining ------------------------------------------------------------------------

# Five faces on a line: squared distances are (x_i - x_j)^2. Hand-worked with alpha = 0.3:
#  (0, 1): d_ap = 0.25, negatives 2: 0.36, 5: 0.49 (both in (0.25, 0.55)), 3: 0.5625, 4: 4.0
#          -> semi-hard {2, 5}, the closest is 2.
#  (1, 0): d_ap = 0.25, negatives 2: 0.01, 5: 0.04, 3: 0.0625, 4: 2.25 -> none semi-hard;
#          easiest fallback -> 4, hardest -> 2.
#  (3, 2): d_ap = 0.0225, negatives 5: 0.0025, 1: 0.0625, 0: 0.5625, 4: 1.5625
#          -> semi-hard {1} although 5 is harder.
X = torch.tensor([0.0, 0.5, 0.6, 0.75, 2.0, 0.7])
Y = torch.tensor([0, 0, 1, 1, 2, 2])
ALPHA = 0.3


def line_distances() -> torch.Tensor:
    return (X[:, None] - X[None, :]) ** 2


def brute_semihard(d: torch.Tensor, labels: torch.Tensor, alpha: float, fallback: str) -> dict[tuple[int, int], int]:
    out = {}
    n = len(labels)
    for a, p in itertools.permutations(range(n), 2):
        if labels[a] != labels[p]:
            continue
        negatives = [k for k in range(n) if labels[k] != labels[a]]
        semi = [k for k in negatives if d[a, p] < d[a, k] < d[a, p] + alpha]
        if semi:
            out[(a, p)] = min(semi, key=lambda k: d[a, k])
        elif fallback == "easiest":
            out[(a, p)] = max(negatives, key=lambda k: d[a, k])
        elif fallback == "hardest":
            out[(a, p)] = min(negatives, key=lambda k: d[a, k])
    return out


def as_dict(a: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> dict[tuple[int, int], int]:
    return {(int(i), int(j)): int(k) for i, j, k in zip(a, p, n)}


def test_semihard_picks_the_closest_semihard_negative_of_a_hand_made_batch() -> None:
    mined = as_dict(*semihard_negatives(line_distances(), Y, ALPHA, "easiest"))
    assert mined[(0, 1)] == 2 and mined[(1, 0)] == 4 and mined[(3, 2)] == 1
    assert len(mined) == 6  # every ordered anchor-positive pair
    assert as_dict(*semihard_negatives(line_distances(), Y, ALPHA, "hardest"))[(1, 0)] == 2
    skipped = as_dict(*semihard_negatives(line_distances(), Y, ALPHA, "skip"))
    assert (1, 0) not in skipped and skipped[(0, 1)] == 2
    for fallback in ("easiest", "hardest", "skip"):
        assert as_dict(*semihard_negatives(line_distances(), Y, ALPHA, fallback)) == brute_semihard(
            line_distances(), Y, ALPHA, fallback
        )


def test_semihard_matches_brute_force_on_a_random_pk_batch() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(6).repeat_interleave(4)
    e = F.normalize(torch.randn(24, 8, generator=g), dim=1)
    d = squared_distances(e)
    assert torch.allclose(d, torch.cdist(e, e) ** 2, atol=1e-5)
    assert as_dict(*semihard_negatives(d, labels, 0.2)) == brute_semihard(d, labels, 0.2, "easiest")


def test_batch_hard_takes_the_farthest_positive_and_closest_negative() -> None:
    d = line_distances()
    a, p, n = batch_hard(d, Y)
    for anchor, pos, neg in zip(a.tolist(), p.tolist(), n.tolist()):
        same = [k for k in range(len(Y)) if Y[k] == Y[anchor] and k != anchor]
        other = [k for k in range(len(Y)) if Y[k] != Y[anchor]]
        assert pos == max(same, key=lambda k: d[anchor, k])
        assert neg == min(other, key=lambda k: d[anchor, k])
    assert a.tolist() == list(range(6))
    assert n[0].item() == 2 and n[3].item() == 5  # anchor 3's hardest negative is 5, not its semi-hard 1


def test_triplet_loss_value_and_metrics_match_the_formula() -> None:
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(4).repeat_interleave(3)
    feature = torch.randn(12, 5, generator=g)
    e = F.normalize(feature, dim=1)
    out = TripletLoss(alpha=0.2, mining="batch_all")({FEATURE: feature}, labels)
    hinges = []
    for a, p, n in itertools.product(range(12), repeat=3):
        if a != p and labels[a] == labels[p] and labels[n] != labels[a]:
            hinges.append(max(0.0, float(((e[a] - e[p]) ** 2).sum() - ((e[a] - e[n]) ** 2).sum()) + 0.2))
    active = [h for h in hinges if h > 0]
    assert out.terms["triplet"].item() == pytest.approx(sum(active) / len(active), rel=1e-5)
    assert out.metrics["active_triplets"] == pytest.approx(len(active) / len(hinges))


# --- CosFace / ArcFace ---------------------------------------------------------------------

COS = torch.tensor([[0.5, 0.2, -0.1], [-0.3, 0.9, 0.4], [-0.95, 0.1, 0.0]])
LABELS = torch.tensor([0, 1, 0])


def test_cosface_logits_equal_the_formula_on_hand_values() -> None:
    s, m = 64.0, 0.35
    expected = torch.tensor(
        [[s * (0.5 - m), s * 0.2, s * -0.1], [s * -0.3, s * (0.9 - m), s * 0.4], [s * (-0.95 - m), s * 0.1, 0.0]]
    )
    assert torch.allclose(cosface_logits(COS, LABELS, s, m), expected, atol=1e-4)


def test_arcface_logits_equal_the_formula_on_hand_values() -> None:
    s, m = 64.0, 0.5
    # rows 0 and 1: theta + m < pi, the bare formula; row 2: theta = acos(-0.95) = 2.82 > pi - m.
    t0, t1 = math.cos(math.acos(0.5) + m), math.cos(math.acos(0.9) + m)
    for fallback, t2 in (
        ("threshold", -0.95 - m * math.sin(m)),
        ("easy", -0.95),
        ("none", math.cos(math.acos(-0.95) + m)),
    ):
        expected = torch.tensor([[s * t0, s * 0.2, s * -0.1], [s * -0.3, s * t1, s * 0.4], [s * t2, s * 0.1, 0.0]])
        assert torch.allclose(arcface_logits(COS, LABELS, s, m, fallback), expected, atol=1e-3), fallback
    # easy margin: no margin at all where cos <= 0
    easy = arcface_logits(torch.tensor([[-0.2, 0.1]]), torch.tensor([0]), s, m, "easy")
    assert easy[0, 0].item() == pytest.approx(s * -0.2)


@pytest.mark.parametrize("fallback", ["threshold", "easy", "none"])
def test_arcface_gradient_is_finite_at_cos_plus_and_minus_one(fallback: str) -> None:
    ctx = BuildContext(num_classes=3, feature_dim=4)
    loss = build_arcface(ArcFaceConfig(fallback=fallback), ctx)
    w = loss.head.weight.detach()
    feature = torch.stack([w[0], -w[1], w[2] * 3.0]).clone().requires_grad_(True)  # cos_y = 1, -1, 1
    out = loss({FEATURE: feature}, torch.tensor([0, 1, 2]))
    out.total.backward()
    assert torch.isfinite(out.total)
    assert torch.isfinite(feature.grad).all() and torch.isfinite(loss.head.weight.grad).all()


def test_margin_losses_report_accuracy_and_target_cosine() -> None:
    ctx = BuildContext(num_classes=3, feature_dim=4)
    loss = build_cosface(CosFaceConfig(), ctx)
    w = loss.head.weight.detach()
    out = loss({FEATURE: w.clone()}, torch.tensor([0, 1, 2]))
    assert out.metrics["train_accuracy"] == 1.0 and out.metrics["cos_target"] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ConfigError, match="loss.fallback"):
        build_arcface(ArcFaceConfig(fallback="soft"), ctx)


# --- Center loss ---------------------------------------------------------------------------


def test_center_loss_term_and_update_follow_the_paper() -> None:
    torch.manual_seed(0)
    loss = CenterLoss(feature_dim=2, num_classes=2, weight=0.003, alpha=0.5)
    feature = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, -2.0]])
    labels = torch.tensor([0, 0, 1])
    out = loss({FEATURE: feature}, labels)
    # centres start at 0: term = lambda/2 * mean ||f||^2
    assert out.terms["center"].item() == pytest.approx(0.003 / 2 * (1 + 9 + 4) / 3)
    # Eq. 4: c_j -= alpha * sum_{y_i = j} (c_j - f_i) / (1 + n_j)
    assert torch.allclose(loss.centers[0], torch.tensor([0.5 * 4.0 / 3, 0.0]))
    assert torch.allclose(loss.centers[1], torch.tensor([0.0, 0.5 * -2.0 / 2]))
    for _ in range(40):
        loss({FEATURE: feature}, labels)
    assert torch.allclose(loss.centers, torch.tensor([[2.0, 0.0], [0.0, -2.0]]), atol=1e-4)  # the class means
    loss.eval()
    before = loss.centers.clone()
    loss({FEATURE: feature + 5}, labels)
    assert torch.equal(loss.centers, before)  # no update outside training


# --- Contrastive vs DeepID2's verification term -------------------------------------------


def test_contrastive_pair_loss_is_hadsell_and_not_the_squared_distance_hinge() -> None:
    m = 1.0
    d = torch.tensor([0.0, 0.4, 0.9, 1.5, 0.4, 0.9, 1.5])
    same = torch.tensor([True, True, True, True, False, False, False])
    ours = pair_losses(d, same, m)
    # Chopra/Hadsell, y = 1 same: y d^2 / 2 + (1 - y) max(0, m - d)^2 / 2
    hadsell = [0.5 * x**2 if s else 0.5 * max(0.0, m - x) ** 2 for x, s in zip(d.tolist(), same.tolist())]
    assert torch.allclose(ours, torch.tensor(hadsell))
    # not the hinge on the squared distance, max(0, m - d^2) / 2 (a common variant): the two
    # differ for non-matching pairs inside the margin and agree (0) beyond it
    squared_hinge = torch.tensor([0.5 * max(0.0, m - x**2) for x in d[~same].tolist()])
    assert (ours[~same][:2] - squared_hinge[:2]).abs().min() > 0.05
    assert ours[~same][2] == squared_hinge[2] == 0.0


def deepid2_verification(f: torch.Tensor, labels: torch.Tensor, m: float) -> torch.Tensor:
    """DeepID2's L2 verification term (METHODS.md), y = 1 same / -1 different, mean over all pairs."""
    terms = []
    for i, j in itertools.combinations(range(len(f)), 2):
        y = 1 if labels[i] == labels[j] else -1
        dist = float((f[i] - f[j]).norm())
        terms.append(0.5 * dist**2 if y == 1 else 0.5 * max(0.0, m - dist) ** 2)
    return torch.tensor(sum(terms) / len(terms))


def test_contrastive_and_deepid2_verification_agree_only_where_their_formulas_agree() -> None:
    g = torch.Generator().manual_seed(2)
    f = torch.rand(8, 6, generator=g) * 0.6  # raw (ReLU-like) features, several pairs inside m
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    reference = deepid2_verification(f, labels, 1.0)
    # on raw features, averaged over every pair, the two pair losses are one formula
    raw = ContrastiveLoss(margin=1.0, normalize=False, pairs="all")({FEATURE: f}, labels)
    assert raw.terms["contrastive"].item() == pytest.approx(reference.item(), rel=1e-5)
    # on unit-length features (normalize=true) the distances, hence the values, differ
    unit = ContrastiveLoss(margin=1.0, normalize=True, pairs="all")({FEATURE: f}, labels)
    assert unit.terms["contrastive"].item() != pytest.approx(reference.item(), rel=1e-2)
    assert unit.terms["contrastive"].item() == pytest.approx(deepid2_verification(F.normalize(f, dim=1), labels, 1.0).item(), rel=1e-5)


def test_contrastive_balances_matching_and_nonmatching_pairs() -> None:
    feature = torch.tensor([[0.0, 0.0], [0.0, 0.6], [2.0, 0.0], [2.0, 0.2], [0.3, 0.0]])
    labels = torch.tensor([0, 0, 1, 1, 2])
    pos, neg = [], []
    for i, j in itertools.combinations(range(5), 2):
        d = float((feature[i] - feature[j]).norm())
        (pos if labels[i] == labels[j] else neg).append(0.5 * d**2 if labels[i] == labels[j] else 0.5 * max(0.0, 1.0 - d) ** 2)
    balanced = ContrastiveLoss(margin=1.0, normalize=False, pairs="weighted")({FEATURE: feature}, labels)
    every = ContrastiveLoss(margin=1.0, normalize=False, pairs="all")({FEATURE: feature}, labels)
    assert balanced.terms["contrastive"].item() == pytest.approx(0.5 * (sum(pos) / len(pos) + sum(neg) / len(neg)))
    assert every.terms["contrastive"].item() == pytest.approx((sum(pos) + sum(neg)) / 10)
    twice = torch.cat([feature, feature[:1]])  # a repeated image: d = 0, the gradient stays finite
    f = twice.clone().requires_grad_(True)
    ContrastiveLoss(margin=1.0, normalize=False)({FEATURE: f}, torch.cat([labels, labels[:1]])).total.backward()
    assert torch.isfinite(f.grad).all()


# --- DeepFace ------------------------------------------------------------------------------


def test_deepface_paper_sizes_and_cpu_default_shapes() -> None:
    paper = deepface_shapes(152, 152, [11, 9, 9, 7, 5])
    assert paper == {"C1": (142, 142), "M2": (71, 71), "C3": (63, 63), "L4": (55, 55), "L5": (25, 25), "L6": (21, 21)}
    net = DeepFaceNet(DeepFaceConfig())
    assert net.shapes["L6"] == (8, 6) and net.input_shape == (3, 55, 47)
    out = net(torch.zeros(2, 3, 55, 47))
    assert out[FEATURE].shape == (2, 512) and net.feature_dim == 512
    grey = DeepFaceNet(DeepFaceConfig(channels=1, height=72, width=72, widths=[8, 8, 8, 8, 8], kernels=[11, 9, 9, 7, 5], feature_dim=32))
    assert grey.shapes["L6"] == (1, 1) and grey(torch.zeros(1, 1, 72, 72))[FEATURE].shape == (1, 32)


def test_deepface_too_small_input_names_the_layer_and_the_minimum() -> None:
    with pytest.raises(ConfigError, match=r"L5 map would be empty.*>= 72"):
        DeepFaceNet(DeepFaceConfig(kernels=[11, 9, 9, 7, 5]))
    with pytest.raises(ConfigError, match="C1 map would be empty"):
        deepface_shapes(4, 40, [5, 3, 3, 3, 3])


# --- timm ----------------------------------------------------------------------------------


def test_timm_is_imported_only_by_the_factory() -> None:
    code = "import sys, facebench_plugins.timm_backbones as t; assert 'timm' not in sys.modules; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]


def test_timm_backbone_builds_a_tiny_model_to_feature_dim() -> None:
    net = build_timm(TimmConfig(model="test_resnet", channels=1, height=32, width=28, feature_dim=16), BuildContext())
    assert net.input_shape == (1, 32, 28) and net.feature_dim == 16
    assert net(torch.zeros(2, 1, 32, 28))[FEATURE].shape == (2, 16)
    with pytest.raises(ConfigError, match="backbone.model='no_such_net'"):
        build_timm(TimmConfig(model="no_such_net"), BuildContext())


# --- VGG-Face -------------------------------------------------------------------------------


def test_vggface_wrapper_checks_the_base_config_and_freezes_the_base_under_the_projection() -> None:
    ctx = BuildContext(num_classes=5)
    with pytest.raises(ConfigError, match="base_config does not fit backbone 'deepface'"):
        build_vggface_backbone(VggFaceBackboneConfig(base="deepface", base_config={"no_such_key": 1}), ctx)
    cfg = VggFaceBackboneConfig(base="deepface", base_config={"height": 72, "width": 72, "kernels": [11, 9, 9, 7, 5], "feature_dim": 24}, proj_dim=8)
    net = build_vggface_backbone(cfg, ctx)
    out = net(torch.randn(3, 3, 72, 72))
    assert out["logits"].shape == (3, 5) and out["base"].shape == (3, 24) and out[FEATURE].shape == (3, 8)
    assert torch.allclose(out[FEATURE].norm(dim=1), torch.ones(3))
    out[FEATURE].sum().backward()
    assert net.projection.weight.grad is not None
    assert all(p.grad is None for p in net.base.parameters())


# --- presets -------------------------------------------------------------------------------

PRESETS = ["facenet", "contrastive", "cosface", "arcface", "center", "deepface", "vggface"]
PK = ["trainer.pk_identities=8", "trainer.pk_images=3"]


@pytest.mark.parametrize("method", PRESETS)
def test_preset_composes_and_completes_a_tiny_run(method: str, tmp_path: Path) -> None:
    cfg = compose([f"+method={method}"])
    assert cfg.method == method
    record = execute(compose([f"+method={method}", *TINY, *PK, f"results_root={tmp_path}"]))
    assert record["status"] == "complete" and record["method"] == method and len(record["units"]) == 10
    assert 0.0 <= record["metrics"][record["primary_metric"]] <= 1.0
    (saved,) = tmp_path.glob("*/metrics.json")
    assert json.loads(saved.read_text())["status"] == "complete"
    if method == "vggface":  # 6 steps, switch at 3; the test-time feature is the projection
        final = record["units"][0]["final_train_metrics"]
        assert final["stage"] == 2.0 and "triplet" in final
        assert record["feature_dim"] == 2 * 128  # flip concat
