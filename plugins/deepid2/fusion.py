"""The verifier of DeepID2's full system: patch selection, PCA + Joint Bayesian, SVM fusion.

The paper (Sec. 4.3) greedily selects 25 of its nets' feature blocks, reduces the 25 x 160
concatenation to 180 dims by PCA and compares faces by Joint Bayesian (98.97% LFW); seven such
selections, their Joint Bayesian scores fused by an SVM, give 99.15%.

Where the selection happens, and why it cannot see the test fold. Selection needs the per-patch
feature blocks and a score for a candidate set; it runs inside this verifier's ``fit``. A
protocol hands ``fit`` the features and identity labels of the current split's *training*
people only (``PairsProtocol.evaluate_unit``: ``features[fit_index]`` with ``fit_index`` the
images of the training folds' people), and never anything of the test fold; every choice below
is a function of those rows. Inside ``fit`` the training people are split by identity
(``holdout``, seeded): PCA + Joint Bayesian are fitted on the rest and a candidate set is scored
on pairs drawn among the held-out people — LFW-style pairs: same pairs pick a person, then two of
their images; different pairs two people, one image each. The score is the verification
accuracy at the exact best threshold on those pairs (ties broken by AUC). With ``pca_dims``,
each selected set's PCA size is chosen on the same held-out pairs.

Then (paper's 7 x 25 = 175 of 200 nets suggests selections from disjoint pools; the text is
not explicit, and this is the reading taken) ``sets`` selections of ``select`` patches each are
made in turn, each from the patches no earlier selection took. With more than one set, an SVM
(scikit-learn LinearSVC on standardised scores) is trained on the held-out pairs' vector of the
sets' Joint Bayesian scores (models fitted without the held-out people, so the SVM does not
see scores of the people the models were fitted on); its decision value is the verifier's score.
Unless ``evaluation.verifier_holdout`` keeps people out of the ConvNets' training, the nets were
trained on the held-out people too (the paper trains its nets on CelebFaces+A and Joint Bayesian
on the disjoint CelebFaces+B), so held-out scores run above test scores: on LFW folds 1-6, by 4
points (README). Finally every set's PCA + Joint Bayesian is refitted on all the people ``fit``
was given, the models that score test pairs.

Feature layout: the ensemble backbone concatenates per-patch blocks of ``block_dim`` (its
per-net feature size); with ``features_flip = concat`` the mirrored face's blocks follow in the
same order, and patch p's block is its columns in both halves (the paper's patch + flipped
counterpart). The presets interpolate both fields from the backbone and features configs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.svm import LinearSVC

from facebench.splits import draw_pairs, hold_out_people
from facebench.components import Verifier
from facebench.config import ConfigError
from facebench.protocols.metrics import accuracy, best_threshold
from facebench.verifiers import VerifierConfig
from facebench_plugins.deepid2.joint_bayesian import JointBayesianVerifier
from facebench_plugins.deepid2.selection import forward_backward_select

log = logging.getLogger(__name__)


@dataclass
class EnsembleVerifierConfig(VerifierConfig):
    """Patch selection + PCA + Joint Bayesian per selected set + SVM fusion of the sets.

    pca_dim: PCA before each set's Joint Bayesian (paper: 180). pca_whiten: off (paper).
    pca_dims: None (default: every set uses pca_dim) or candidate PCA sizes: once a set is
      selected (at pca_dim), each candidate is scored on the same held-out training pairs and
      the best (accuracy, then AUC) is that set's PCA size from then on (SVM and final fit).
      The paper fixes 180 for 25 nets trained on 8,192 people; a Joint Bayesian fitted on
      LFW's ~1,500 training people per fold may want fewer dimensions, and this lets the
      training data say so (the paper, too, chose settings on held-out CelebFaces+ people).
    block_dim: the per-patch feature size (the ensemble's backbone.feature_dim: 160).
    features_flip: features.flip of the run (concat: mirrored-face blocks follow).
    select: K, patches per selected set (paper: 25). sets: S, selections fused by the SVM
      (paper: 7; 1 = no SVM, the set's Joint Bayesian score). S * K must not exceed the patches.
    holdout: share of the training people (with 2+ images) held out to score sets and train
      the SVM. pairs: same pairs, and as many different pairs, drawn among them.
    seed: for the people split and the pair draw.
    em, max_iter, tol, accelerate, ridge: Joint Bayesian EM settings (plugins/deepid2/joint_bayesian.py).
    """

    name: str = "deepid2_ensemble"
    pca_dim: Optional[int] = 180
    pca_dims: Optional[list[int]] = None
    block_dim: int = 160
    features_flip: str = "concat"
    select: int = 25
    sets: int = 7
    holdout: float = 0.3
    pairs: int = 3000
    seed: int = 0
    em: str = "posterior"
    max_iter: int = 100
    tol: float = 1e-4
    accelerate: str = "px"
    ridge: float = 1e-3


def patch_columns(dim: int, block_dim: int, flip_concat: bool) -> list[np.ndarray]:
    """Feature columns of every patch: its block, and its mirrored-face block under flip concat."""
    halves = 2 if flip_concat else 1
    if block_dim <= 0 or dim % (block_dim * halves):
        raise ConfigError(
            f"verifier.block_dim={block_dim}: {dim}-d features are not whole patch blocks"
            f"{' in two flip halves' if flip_concat else ''}; set it to the backbone's per-net feature_dim"
        )
    patches = dim // (block_dim * halves)
    half = patches * block_dim
    return [
        np.concatenate([np.arange(p * block_dim, (p + 1) * block_dim) + h * half for h in range(halves)])
        for p in range(patches)
    ]


def holdout_split(labels: np.ndarray, share: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(fit, held-out) image masks: a ``share`` of the people with 2+ images is held out."""
    people, counts = np.unique(labels, return_counts=True)
    held = hold_out_people(counts, share, rng, "verifier.holdout", "the verifier's training people")
    out = np.isin(labels, people[held])
    return ~out, out


class PatchEnsembleVerifier(Verifier):
    """See the module docstring; ``sets_`` holds the selected patch indices after ``fit``."""

    def __init__(self, cfg: EnsembleVerifierConfig) -> None:
        self.cfg = cfg
        if cfg.features_flip not in ("none", "sum", "concat"):
            raise ConfigError(f"verifier.features_flip={cfg.features_flip!r}: use none, sum or concat")
        if cfg.select < 1 or cfg.sets < 1:
            raise ConfigError(f"verifier.select={cfg.select}, verifier.sets={cfg.sets}: both must be >= 1")
        if cfg.pca_dims is not None and (not cfg.pca_dims or any(int(d) < 1 for d in cfg.pca_dims)):
            raise ConfigError(f"verifier.pca_dims={cfg.pca_dims}: give positive PCA sizes, or null for pca_dim only")
        self._jb()  # its settings (em, accelerate) are checked now, not after training
        self.sets_: list[list[int]] = []
        self.set_dims_: list[Optional[int]] = []
        self.dim_scores_: dict[tuple[int, ...], dict[int, tuple[float, float]]] = {}
        self.models: list[JointBayesianVerifier] = []
        self.svm: dict[str, np.ndarray] = {}
        self.heldout_: dict[tuple[int, ...], tuple[float, float]] = {}
        self.heldout_pairs_ = 0

    def _jb(self, pca_dim: Optional[int] = None) -> JointBayesianVerifier:
        c = self.cfg
        return JointBayesianVerifier(
            pca_dim=c.pca_dim if pca_dim is None else pca_dim, pca_whiten=c.pca_whiten, em=c.em,
            max_iter=c.max_iter, tol=c.tol, accelerate=c.accelerate, ridge=c.ridge,
        )

    def _columns(self, dim: int) -> list[np.ndarray]:
        columns = patch_columns(dim, self.cfg.block_dim, self.cfg.features_flip == "concat")
        if self.cfg.select * self.cfg.sets > len(columns):
            raise ConfigError(
                f"verifier.select={self.cfg.select} x verifier.sets={self.cfg.sets} patches needed, but the features "
                f"hold {len(columns)} patches (selections are disjoint)"
            )
        return columns

    def fit(self, features: np.ndarray, labels: np.ndarray) -> "PatchEnsembleVerifier":
        x, labels = np.asarray(features, dtype=np.float64), np.asarray(labels)
        columns = self._columns(x.shape[1])
        rng = np.random.default_rng(self.cfg.seed)
        fit_rows, out_rows = holdout_split(labels, self.cfg.holdout, rng)
        x_fit, y_fit, x_out = x[fit_rows], labels[fit_rows], x[out_rows]
        pairs, same = draw_pairs(labels[out_rows], self.cfg.pairs, rng)

        def pair_scores(members: tuple[int, ...], pca_dim: Optional[int] = None) -> np.ndarray:
            cols = np.concatenate([columns[p] for p in members])
            model = self._jb(pca_dim).fit(x_fit[:, cols], y_fit)
            return model.score(x_out[pairs[:, 0]][:, cols], x_out[pairs[:, 1]][:, cols])

        def measured(scores: np.ndarray) -> tuple[float, float]:
            return accuracy(scores, same, best_threshold(scores, same)), float(roc_auc_score(same, scores))

        def set_score(members: tuple[int, ...]) -> tuple[float, float]:
            if members not in self.heldout_:
                self.heldout_[members] = measured(pair_scores(members))
            return self.heldout_[members]

        def set_dim(members: tuple[int, ...]) -> Optional[int]:
            if self.cfg.pca_dims is None:
                return self.cfg.pca_dim
            scores = {int(d): measured(pair_scores(members, int(d))) for d in self.cfg.pca_dims}
            self.dim_scores_[members] = scores
            return max(scores, key=scores.__getitem__)

        self.sets_, self.set_dims_, self.heldout_, self.dim_scores_ = [], [], {}, {}
        self.heldout_pairs_ = len(same)
        for p in range(len(columns)):  # every single patch: the baseline each selected set must beat
            set_score((p,))
        for k in range(self.cfg.sets):
            pool = [p for p in range(len(columns)) if all(p not in chosen for chosen in self.sets_)]
            chosen = forward_backward_select(set_score, pool, self.cfg.select)
            log.info("deepid2_ensemble: set %d selects patches %s (held-out score %s)", k + 1, chosen, set_score(tuple(sorted(chosen))))
            self.sets_.append(chosen)
            self.set_dims_.append(set_dim(tuple(sorted(chosen))))
        self.svm = {}
        if len(self.sets_) > 1:
            stacked = np.stack(
                [pair_scores(tuple(sorted(chosen)), dim) for chosen, dim in zip(self.sets_, self.set_dims_)], axis=1
            )
            mean, scale = stacked.mean(0), stacked.std(0) + 1e-12
            svm = LinearSVC(C=1.0, random_state=self.cfg.seed).fit((stacked - mean) / scale, same)
            self.svm = {"mean": mean, "scale": scale, "coef": svm.coef_.ravel(), "intercept": svm.intercept_}
        self.models = [
            self._jb(dim).fit(x[:, np.concatenate([columns[p] for p in chosen])], labels)
            for chosen, dim in zip(self.sets_, self.set_dims_)
        ]
        return self

    def fit_report(self) -> dict[str, Any]:
        """What the last ``fit`` saw on its held-out training pairs: every single patch's score and
        each selected set's (patch indices in the backbone's patch order), so a record shows
        whether the selected sets beat the best single patch before any test pair is scored."""
        def entry(members: tuple[int, ...]) -> dict[str, Any]:
            acc, auc = self.heldout_[members]
            return {"patches": list(members), "accuracy": acc, "auc": auc}

        def selected(members: tuple[int, ...], dim: Optional[int]) -> dict[str, Any]:
            scored = {d: {"accuracy": acc, "auc": auc} for d, (acc, auc) in self.dim_scores_.get(members, {}).items()}
            return {**entry(members), "pca_dim": dim, **({"by_pca_dim": scored} if scored else {})}

        singles = [entry(k) for k in sorted(self.heldout_) if len(k) == 1]
        return {
            "heldout_pairs": self.heldout_pairs_,
            "single_patches": singles,
            "best_single_patch": max(singles, key=lambda e: (e["accuracy"], e["auc"])) if singles else None,
            "selected_sets": [selected(tuple(sorted(chosen)), dim) for chosen, dim in zip(self.sets_, self.set_dims_)],
            "svm_fusion": bool(self.svm),
        }

    def _set_columns(self, dim: int) -> list[np.ndarray]:
        if not self.models:
            raise RuntimeError("PatchEnsembleVerifier: call fit (or load_state) before scoring")
        columns = patch_columns(dim, self.cfg.block_dim, self.cfg.features_flip == "concat")
        return [np.concatenate([columns[p] for p in chosen]) for chosen in self.sets_]

    def _fuse(self, per_set: list[np.ndarray]) -> np.ndarray:
        if not self.svm:
            return per_set[0]
        out = np.full_like(per_set[0], float(self.svm["intercept"][0]))
        for s, scores in enumerate(per_set):
            out += self.svm["coef"][s] * (scores - self.svm["mean"][s]) / self.svm["scale"][s]
        return out

    def score(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        cols = self._set_columns(np.shape(a)[1])
        return self._fuse([m.score(a[:, c], b[:, c]) for m, c in zip(self.models, cols)])

    def score_matrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        cols = self._set_columns(np.shape(a)[1])
        return self._fuse([m.score_matrix(a[:, c], b[:, c]) for m, c in zip(self.models, cols)])

    def state(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {"sets": np.asarray(self.sets_, dtype=np.int64)}
        for s, model in enumerate(self.models):
            out.update({f"set{s}_{k}": v for k, v in model.state().items()})
        out.update({f"svm_{k}": v for k, v in self.svm.items()})
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> "PatchEnsembleVerifier":
        self.sets_ = [list(map(int, row)) for row in np.asarray(state["sets"])]
        self.models = []
        for s in range(len(self.sets_)):
            prefix = f"set{s}_"
            self.models.append(self._jb().load_state({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}))
        self.svm = {k[4:]: np.asarray(v) for k, v in state.items() if k.startswith("svm_")}
        return self
