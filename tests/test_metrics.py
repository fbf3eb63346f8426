"""The pinned LFW verification metrics: exact threshold, fold spread, pooled ROC figures."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import auc, roc_auc_score, roc_curve

from facebench.protocols.metrics import accuracy, best_threshold, evaluate_pair_folds


def test_two_folds_by_hand():
    # Scores are small binary-exact numbers so the midpoints below are exact floats.
    a_scores, a_same = [9, 7, 4, 6, 5, 1], [1, 1, 1, 0, 0, 0]
    b_scores, b_same = [8, 5, 3, 6.5, 2.5, 0.5], [1, 1, 1, 0, 0, 0]
    # Test fold A, train on B. B ascending: 0.5D 2.5D 3S 5S 6.5D 8S.
    # correct = genuine >= t + impostor < t:
    #   t=0.5: 3+0=3  t=2.5: 3+1=4  t=3: 3+2=5  t=5: 2+2=4  t=6.5: 1+2=3  t=8: 1+3=4  inf: 0+3=3
    # single winner t=3; midpoint with the next lower score 2.5 -> 2.75.
    # On A at 2.75: 9S 7S 4S right, 6D 5D accepted (wrong), 1D right -> 4/6.
    # Test fold B, train on A. A ascending: 1D 4S 5D 6D 7S 9S.
    #   t=1: 3+0=3  t=4: 3+1=4  t=5: 2+1=3  t=6: 2+2=4  t=7: 2+3=5  t=9: 1+3=4  inf: 0+3=3
    # single winner t=7; midpoint with 6 -> 6.5.
    # On B at 6.5: 8S right, 5S 3S rejected (wrong), 6.5D accepted since score >= threshold
    # (wrong), 2.5D 0.5D right -> 3/6.
    summary = evaluate_pair_folds(
        [("A", b_scores, b_same, a_scores, a_same), ("B", a_scores, a_same, b_scores, b_same)]
    )
    assert [f.name for f in summary.folds] == ["A", "B"]
    assert [f.threshold for f in summary.folds] == [2.75, 6.5]
    assert [f.accuracy for f in summary.folds] == [4 / 6, 3 / 6]
    assert [f.n_pairs for f in summary.folds] == [6, 6]
    # mean (4/6 + 3/6) / 2 = 7/12; sd(ddof=1) of two values = |a - b| / sqrt(2) = (1/6)/sqrt(2);
    # SE = sd / sqrt(2) = 1/12.
    assert summary.mean_accuracy == pytest.approx(7 / 12)
    assert summary.sd_accuracy == pytest.approx((1 / 6) / math.sqrt(2))
    assert summary.se_accuracy == pytest.approx(1 / 12)
    table = summary.fold_table()
    assert list(table["fold"]) == ["A", "B"]
    assert list(table["accuracy"]) == [4 / 6, 3 / 6]
    assert list(table["n_genuine"]) == [3, 3]


def test_se_uses_sample_sd_over_ten_folds():
    rng = np.random.default_rng(0)
    folds = []
    for k in range(10):
        y = np.repeat([True, False], 300)
        s = rng.normal(y * 1.5, 1.0)
        folds.append((s, y))
    per_fold = []
    for k in range(10):
        train = [folds[j] for j in range(10) if j != k]
        per_fold.append(
            (f"fold{k + 1}", np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]), *folds[k])
        )
    summary = evaluate_pair_folds(per_fold)
    accs = np.array([f.accuracy for f in summary.folds])
    assert summary.se_accuracy == pytest.approx(np.std(accs, ddof=1) / np.sqrt(10))
    assert summary.se_accuracy != pytest.approx(np.std(accs, ddof=0) / np.sqrt(10))
    # LFW View 2 sizes: 3,000 pooled impostor pairs -> 30 expected false accepts at 1e-2,
    # only 3 at 1e-3.
    assert summary.n_impostor == 3000
    assert [(t.far, t.low_confidence) for t in summary.tar_at_far] == [(1e-2, False), (1e-3, True)]
    assert summary.tar_at_far[1].expected_false_accepts == pytest.approx(3.0)


def test_one_fold_has_no_spread():
    s, y = [3.0, 2.0, 1.0, 0.0], [1, 1, 0, 0]
    summary = evaluate_pair_folds([("dev", s, y, s, y)])
    assert summary.mean_accuracy == 1.0
    assert math.isnan(summary.sd_accuracy) and math.isnan(summary.se_accuracy)
    assert summary.to_dict()["se_accuracy"] is None


@pytest.mark.parametrize(
    ("scores", "same", "expected"),
    [
        # correct per candidate 1,2,3,4,5,6,inf: 3,4,3,4,3,4,3 -> winners 2,4,6; lower median 4;
        # midpoint with 3 -> 3.5.
        ([1, 2, 3, 4, 5, 6], [0, 1, 0, 1, 0, 1], 3.5),
        # correct per candidate 1,2,3,4,inf: 2,3,2,3,2 -> winners 2,4; lower median 2 -> 1.5.
        ([1, 2, 3, 4], [0, 1, 0, 1], 1.5),
        # everything genuine: only the lowest score accepts all; no lower score to halve with.
        ([5, 1, 3], [1, 1, 1], 1.0),
        # everything impostor: only +inf rejects all.
        ([5, 1, 3], [0, 0, 0], math.inf),
        # ties: score 2 holds a genuine and an impostor; t=2 -> 2+1=3, t=3 -> 1+2=3,
        # t=1 -> 2+0=2, inf -> 0+2=2: winners 2,3; lower median 2 -> midpoint with 1 -> 1.5.
        ([1, 2, 2, 3], [0, 1, 0, 1], 1.5),
    ],
)
def test_threshold_rule(scores, same, expected):
    assert best_threshold(scores, same) == expected


def test_midpoint_between_adjacent_floats_keeps_the_candidate():
    lo = 1.0
    hi = float(np.nextafter(lo, 2.0))  # (lo + hi) / 2 rounds onto lo
    t = best_threshold([lo, hi], [0, 1])
    assert t == hi
    assert accuracy([lo, hi], [0, 1], t) == 1.0


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="NaN"):
        best_threshold([0.1, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="equal length"):
        best_threshold([0.1, 0.2], [0, 1, 1])
    with pytest.raises(ValueError, match="0/1"):
        best_threshold([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="both"):
        evaluate_pair_folds([("x", [0.0, 1.0], [0, 1], [0.5, 0.6], [1, 1])])


def _brute_force_best(s: np.ndarray, y: np.ndarray) -> float:
    return max(np.mean((s >= t) == y) for t in [*np.unique(s), np.inf])


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(
                st.sampled_from([-1.0, 0.0, 0.5, 2.0]),  # forces ties
                st.floats(allow_nan=False, width=64),  # any magnitude, infinities included
            ),
            st.booleans(),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_exact_threshold_is_optimal(pairs):
    s = np.array([p[0] for p in pairs])
    y = np.array([p[1] for p in pairs])
    t = best_threshold(s, y)
    best = accuracy(s, y, t)
    assert best == _brute_force_best(s, y)
    finite = s[np.isfinite(s)]
    if len(finite):
        # Halved then doubled so the span of extreme floats cannot overflow.
        grid = np.linspace(finite.min() / 2, finite.max() / 2, 401) * 2
        grid_accuracy = ((s[None, :] >= grid[:, None]) == y).mean(axis=1)
        assert best >= grid_accuracy.max()


def test_pooled_roc_and_auc_equal_sklearn():
    rng = np.random.default_rng(1)
    per_fold, all_s, all_y = [], [], []
    for k in range(3):
        y = rng.random(200) < 0.5
        s = np.round(rng.normal(y * 1.0, 1.0), 1)  # rounded: ties inside and across folds
        per_fold.append((f"f{k}", s, y, s, y))
        all_s.append(s)
        all_y.append(y)
    s, y = np.concatenate(all_s), np.concatenate(all_y)
    summary = evaluate_pair_folds(per_fold)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_array_equal(summary.fpr, fpr)
    np.testing.assert_array_equal(summary.tpr, tpr)
    np.testing.assert_array_equal(summary.roc_thresholds, thr)
    assert summary.auc == pytest.approx(auc(fpr, tpr))
    assert summary.auc == pytest.approx(roc_auc_score(y, s))
    # AUC is also P(genuine score > impostor score) + P(tie) / 2.
    diff = s[y][:, None] - s[~y][None, :]
    assert summary.auc == pytest.approx(np.mean(diff > 0) + 0.5 * np.mean(diff == 0))


def test_eer_interpolates_between_roc_points():
    # Genuine 2.5, 5, 6; impostor 1, 2, 3, 4. ROC points (FPR, FNR) descending in threshold:
    # 6 -> (0, 2/3), 5 -> (0, 1/3), 4 -> (1/4, 1/3), 3 -> (1/2, 1/3), 2.5 -> (1/2, 0), ...
    # Between thresholds 4 and 3 FNR stays 1/3 while FPR goes 1/4 -> 1/2, so FPR = FNR at 1/3.
    s = [2.5, 5, 6, 1, 2, 3, 4]
    y = [1, 1, 1, 0, 0, 0, 0]
    assert evaluate_pair_folds([("x", s, y, s, y)]).eer == pytest.approx(1 / 3)


def test_tar_at_far_and_low_confidence():
    # 1,000 impostors scored 0..999; genuines: 50 at 2000, 20 at 995.5, 30 at 985.5.
    impostor = np.arange(1000.0)
    genuine = np.repeat([2000.0, 995.5, 985.5], [50, 20, 30])
    s = np.concatenate([genuine, impostor])
    y = np.concatenate([np.ones(100, bool), np.zeros(1000, bool)])
    summary = evaluate_pair_folds([("x", s, y, s, y)])
    at_2, at_3 = summary.tar_at_far
    # FAR 1e-2 allows 10 false accepts: threshold 990 accepts impostors 990..999 (FPR exactly
    # 0.01) and the genuines at 2000 and 995.5 -> TAR 0.7; 985.5 would accept 14 impostors.
    assert (at_2.tar, at_2.threshold) == (0.7, 990.0)
    # FAR 1e-3 allows 1 false accept: threshold 999 -> only the 50 genuines at 2000.
    assert (at_3.tar, at_3.threshold) == (0.5, 999.0)
    # 1,000 x 1e-2 = 10 expected false accepts (enough); 1,000 x 1e-3 = 1 (not).
    assert (at_2.low_confidence, at_3.low_confidence) == (False, True)


def test_to_dict_is_json_and_downsamples_the_roc():
    rng = np.random.default_rng(2)
    y = rng.random(3000) < 0.5
    s = rng.normal(y * 2.0, 1.0)
    summary = evaluate_pair_folds([("a", s[1500:], y[1500:], s[:1500], y[:1500]), ("b", s[:1500], y[:1500], s[1500:], y[1500:])])
    record = summary.to_dict(max_roc_points=50)
    assert json.loads(json.dumps(record, allow_nan=False)) == record
    roc = record["roc"]
    assert roc["n_exact_points"] == len(summary.fpr) > 1000
    assert len(roc["fpr"]) <= 52
    assert (roc["fpr"][0], roc["tpr"][0]) == (0.0, 0.0) and (roc["fpr"][-1], roc["tpr"][-1]) == (1.0, 1.0)
    assert roc["thresholds"][0] is None  # sklearn's +inf first threshold
    # Kept points are exact ROC points, and the stored AUC is the exact one.
    exact = set(zip(summary.fpr.tolist(), summary.tpr.tolist()))
    assert set(zip(roc["fpr"], roc["tpr"])) <= exact
    assert record["auc"] == summary.auc
    assert [f["name"] for f in summary.unit_rows()] == ["a", "b"] and "folds" not in record
