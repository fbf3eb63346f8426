"""DeepID2's joint signal: the verification forms on hand values, pair formation, the lambda
readings, and the margin (exact threshold rule, window buffers, learned collapse)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facebench.components import FEATURE
from facebench.config import ConfigError
from facebench_plugins.deepid2.loss import DeepID2Loss, DeepID2LossConfig, MarginConfig
from facebench_plugins.deepid2.margin import Margin, best_threshold
from facebench.mining import batch_pairs


def verification_only(form: str, mode: str = "fixed", initial: float | None = 6.0, **kw) -> DeepID2Loss:
    cfg = DeepID2LossConfig(lambda_=1.0, id_weight=0.0, verification=form, pairs="all", margin=MarginConfig(mode, initial), **kw)
    return DeepID2Loss(2, 3, cfg)


def term(loss: DeepID2Loss, a: list[float], b: list[float], same: bool) -> float:
    f = torch.tensor([a, b])
    labels = torch.tensor([0, 0 if same else 1])
    return loss({FEATURE: f}, labels).terms["verification"].item()


# --- the three forms on hand values --------------------------------------------------------


def test_l2_form_on_hand_values():
    # (0, 0) vs (3, 4): ||.||_2 = 5.
    loss = verification_only("l2", initial=6.0)
    assert term(loss, [0, 0], [3, 4], True) == pytest.approx(0.5 * 25)
    assert term(loss, [0, 0], [3, 4], False) == pytest.approx(0.5 * (6 - 5) ** 2)
    assert term(verification_only("l2", initial=4.0), [0, 0], [3, 4], False) == 0.0


def test_l1_form_on_hand_values():
    # ||.||_1 = 7: the hinge acts on the unsquared L1 distance, then is squared.
    loss = verification_only("l1", initial=8.0)
    assert term(loss, [0, 0], [3, 4], True) == pytest.approx(0.5 * 49)
    assert term(loss, [0, 0], [3, 4], False) == pytest.approx(0.5 * 1.0)
    assert term(verification_only("l1", initial=7.0), [0, 0], [3, 4], False) == 0.0


def test_cosine_form_on_hand_values():
    loss = verification_only("cosine", cosine_scale=2.0, cosine_bias=-1.0)
    p = 1.0 / (1.0 + math.exp(-(2.0 * (1 / math.sqrt(2)) - 1.0)))  # cos((1,0),(1,1)) = 1/sqrt(2)
    assert term(loss, [1, 0], [1, 1], True) == pytest.approx(0.5 * (1 - p) ** 2)
    assert term(loss, [1, 0], [1, 1], False) == pytest.approx(0.5 * p**2)
    assert {n for n, _ in loss.named_parameters()} == {"cosine_scale", "cosine_bias"}  # w, b are learned


def test_identification_and_lambda_readings():
    torch.manual_seed(0)
    f, labels = torch.rand(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    joint = DeepID2Loss(4, 5, DeepID2LossConfig(margin=MarginConfig("fixed", 1.0)))
    out = joint({FEATURE: f}, labels)
    logits = f @ joint.head_weight[0].T + joint.head_bias[0]
    assert out.terms["identification"].item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
    assert set(out.metrics) == {"train_id_accuracy", "train_pair_accuracy", "margin"}
    deepid = DeepID2Loss(4, 5, DeepID2LossConfig(lambda_=0.0))
    assert set(deepid({FEATURE: f}, labels).terms) == {"identification"}
    inf = DeepID2Loss(4, 5, DeepID2LossConfig(lambda_=math.inf, margin=MarginConfig("fixed", 1.0), pairs="all"))
    one = DeepID2Loss(4, 5, DeepID2LossConfig(lambda_=1.0, id_weight=0.0, margin=MarginConfig("fixed", 1.0), pairs="all"))
    assert set(inf({FEATURE: f}, labels).terms) == {"verification"} and not list(inf.parameters())
    assert inf({FEATURE: f}, labels).terms["verification"].item() == one({FEATURE: f}, labels).terms["verification"].item()
    with pytest.raises(ConfigError, match="no signal"):
        DeepID2Loss(4, 5, DeepID2LossConfig(lambda_=0.0, id_weight=0.0))
    with pytest.raises(ConfigError, match="verification"):
        DeepID2Loss(4, 5, DeepID2LossConfig(verification="l3"))


def test_balanced_pairs_take_every_same_pair_and_as_many_different():
    torch.manual_seed(0)
    labels = torch.arange(8).repeat_interleave(4)  # 8 x 4: 48 same pairs, 448 different
    i, j, same = batch_pairs(labels, "balanced")
    assert same.sum() == 48 and (~same).sum() == 48 and (i < j).all()
    assert torch.equal(labels[i] == labels[j], same)
    assert len({(a, b) for a, b in zip(i.tolist(), j.tolist())}) == 96
    assert len(batch_pairs(labels, "all")[2]) == 32 * 31 // 2


# --- the margin ------------------------------------------------------------------------------


def brute_force_threshold(d: np.ndarray, same: np.ndarray) -> tuple[float, int]:
    """Every threshold that separates distinct distances, smallest first; the first with the
    fewest errors of "same iff d < t"."""
    values = np.unique(d)
    candidates = [values[0] - 0.5] + [(a + b) / 2 for a, b in zip(values[:-1], values[1:])] + [values[-1] + 0.5]
    errors = [int(((d < t) != same).sum()) for t in candidates]
    k = int(np.argmin(errors))
    return float(candidates[k]), errors[k]


@pytest.mark.parametrize("seed", range(6))
def test_best_threshold_equals_brute_force_search(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    same = rng.random(n) < 0.5
    d = np.round(np.where(same, rng.normal(1.0, 0.6, n), rng.normal(2.0, 0.6, n)), 1)  # rounding makes ties
    rows = np.stack([d, d[::-1]]).astype(np.float32)
    got = best_threshold(torch.from_numpy(rows), torch.from_numpy(same))
    for r in range(2):
        t, err = brute_force_threshold(rows[r].astype(np.float64), same)
        assert got[r].item() == pytest.approx(t, abs=1e-6)
        assert int(((rows[r] < got[r].item()) != same).sum()) == err


def test_adaptive_margin_resets_every_n_pairs_to_the_window_threshold():
    rng = np.random.default_rng(3)
    every = 50
    margin = Margin(nets=2, mode="adaptive", initial=9.0, every=every)
    seen_d, seen_same = [], []
    for size in (17, 30, 40, 13, 25):  # batches straddle window boundaries
        d = rng.gamma(2.0, 1.0, size=(2, size)).astype(np.float32)
        same = rng.random(size) < 0.5
        margin.observe(torch.from_numpy(d), torch.from_numpy(same))
        seen_d.append(d)
        seen_same.append(same)
    d, same = np.concatenate(seen_d, axis=1), np.concatenate(seen_same)
    assert len(same) == 125 and int(margin.updates) == 2 and int(margin.filled) == 25
    window = slice(50, 100)  # the second full window set the current margin
    for r in range(2):
        t, _ = brute_force_threshold(d[r, window].astype(np.float64), same[window])
        assert margin.value[r].item() == pytest.approx(t, abs=1e-6)
    assert torch.equal(margin.window[:, :25], torch.from_numpy(d[:, 100:]))


def test_margin_window_survives_a_checkpoint():
    rng = np.random.default_rng(4)
    batches = [(torch.from_numpy(rng.gamma(2.0, 1.0, (1, 30)).astype(np.float32)), torch.from_numpy(rng.random(30) < 0.5)) for _ in range(5)]
    straight = Margin(1, "adaptive", None, every=70)
    for d, s in batches:
        straight.observe(d, s)
    first = Margin(1, "adaptive", None, every=70)
    for d, s in batches[:2]:
        first.observe(d, s)
    resumed = Margin(1, "adaptive", None, every=70)
    resumed.load_state_dict(first.state_dict())
    for d, s in batches[2:]:
        resumed.observe(d, s)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_unset_initial_margin_is_the_first_batch_threshold():
    d, same = torch.tensor([[0.5, 1.0, 2.0, 3.0]]), torch.tensor([True, True, False, False])
    margin = Margin(1, "fixed", None)
    margin.observe(d, same)
    assert margin.value.item() == pytest.approx(1.5)
    margin.observe(d * 10, same)
    assert margin.value.item() == pytest.approx(1.5)  # fixed from then on


def margin_run(mode: str, steps: int = 400) -> tuple[list[float], float]:
    """The L2 verification signal on features of 6 identities on a line (centres 1 apart, noise
    0.35: neighbouring identities overlap, as real ones do); only the margin adapts. Returns the
    margin after every step and the mean train pair accuracy of the last 50 steps."""
    torch.manual_seed(0)
    centres = torch.arange(6.0)[:, None]
    loss = DeepID2Loss(1, 6, DeepID2LossConfig(lambda_=math.inf, margin=MarginConfig(mode, 2.0, every=256)))
    opt = torch.optim.SGD(list(loss.parameters()), lr=1.0) if mode == "learned" else None
    margins, accuracies = [], []
    labels = torch.arange(6).repeat_interleave(4)
    for _ in range(steps):
        out = loss({FEATURE: centres[labels] + 0.35 * torch.randn(24, 1)}, labels)
        if opt is not None:
            opt.zero_grad()
            out.total.backward()
            opt.step()
        margins.append(out.metrics["margin"])
        accuracies.append(out.metrics["train_pair_accuracy"])
    return margins, float(np.mean(accuracies[-50:]))


def test_learned_margin_collapses_while_adaptive_settles_where_it_separates():
    # d loss / d m = mean over different pairs of max(0, m - d) >= 0: gradient descent only ever
    # lowers m, and the overlapping tail of different pairs keeps pulling it toward 0.
    learned, learned_accuracy = margin_run("learned")
    adaptive, adaptive_accuracy = margin_run("adaptive")
    assert all(b <= a for a, b in zip(learned, learned[1:]))
    assert learned[-1] < 0.2  # from 2.0
    assert min(adaptive[-100:]) > 0.6 and adaptive_accuracy > 0.85  # threshold between same (~0.5) and different (~1)
    assert learned_accuracy < adaptive_accuracy - 0.2


def test_margin_mode_is_checked():
    with pytest.raises(ConfigError, match="margin.mode"):
        Margin(1, "sometimes")
