"""The synthetic dataset: deterministic, LFW-shaped, and carrying identity in its pixels."""
from __future__ import annotations

import numpy as np
import pytest

from facebench.data.synthetic import identity_names, make_training_set, render_faces
from facebench.protocols.synthetic import make_pairs_benchmark
from facebench.protocols.benchmark import PairsBenchmark

SEED = 7


@pytest.fixture(scope="module")
def bench() -> PairsBenchmark:
    """LFW View 2's shape (10 folds, 300 + 300 pairs each) on fewer people than the default,
    so the test renders ~1,000 faces instead of ~3,200; 12 x 8 images still allow 336 matched pairs."""
    return make_pairs_benchmark(n_folds=10, people_per_fold=12, images_per_person=(8, 10), pairs_per_class=300, seed=SEED)


def test_same_seed_gives_identical_bytes_and_other_seed_differs() -> None:
    names = identity_names("t", 3)
    a = render_faces(names, [4, 2, 3], seed=SEED)
    b = render_faces(names, [4, 2, 3], seed=SEED)
    c = render_faces(names, [4, 2, 3], seed=SEED + 1)
    assert a.images.tobytes() == b.images.tobytes()
    assert a.keys == b.keys and np.array_equal(a.labels, b.labels)
    assert np.mean(a.images != c.images) > 0.5


def test_an_image_depends_only_on_seed_name_and_number() -> None:
    """Rendering more people, or more images of a person, leaves existing images unchanged."""
    alone = render_faces(["t-b"], [3], seed=SEED)
    together = render_faces(["t-a", "t-b"], [70, 5], seed=SEED)  # other chunking and order
    assert np.array_equal(together.images[70:73], alone.images)


def test_shapes_dtypes_labels_and_keys() -> None:
    faces = render_faces(["p-1", "p-2"], [2, 3], seed=SEED)
    assert faces.images.shape == (5, 112, 96, 3) and faces.images.dtype == np.uint8
    assert faces.labels.tolist() == [0, 0, 1, 1, 1] and faces.labels.dtype == np.int64
    assert faces.names == ["p-1", "p-2"]
    assert faces.keys == ["p-1/p-1_0001", "p-1/p-1_0002", "p-2/p-2_0001", "p-2/p-2_0002", "p-2/p-2_0003"]
    assert render_faces(["p-1"], [2], seed=SEED, size=(55, 47)).images.shape == (2, 55, 47, 3)
    assert 30 < faces.images.mean() < 220 and faces.images.std() > 20  # neither blank nor saturated


def test_training_set_is_balanced_and_named_by_prefix() -> None:
    train = make_training_set(5, 3, seed=SEED)
    assert train.images.shape == (15, 112, 96, 3)
    assert np.bincount(train.labels).tolist() == [3] * 5
    assert all(n.startswith("synth-train-") for n in train.names)


def test_benchmark_has_lfw_view2_structure(bench: PairsBenchmark) -> None:
    labels = bench.faces.labels
    assert len(bench.folds) == 10 and len(bench.units) == 10
    assert bench.info["pairs_per_class"] == 300
    seen_people: set[str] = set()
    for k, fold in enumerate(bench.folds):
        assert fold.pairs.shape == (600, 2)
        assert fold.same[:300].all() and not fold.same[300:].any()  # matched first
        a, b = fold.pairs[:, 0], fold.pairs[:, 1]
        assert (a != b).all()  # two different images, always
        assert (labels[a[:300]] == labels[b[:300]]).all()
        assert (labels[a[300:]] != labels[b[300:]]).all()
        assert len({tuple(sorted(p)) for p in fold.pairs.tolist()}) == 600  # no pair repeats
        fold_people = {bench.faces.names[i] for i in labels[fold.pairs.ravel()]}
        assert fold_people <= set(fold.people) and len(fold.people) == 12
        assert not seen_people & set(fold.people)  # folds are identity-disjoint
        seen_people |= set(fold.people)
        unit = bench.units[k]
        assert unit.test == k and sorted(unit.train) == [j for j in range(10) if j != k]
    per_person = np.bincount(labels)
    assert per_person.min() >= 8 and per_person.max() <= 10
    train = make_training_set(4, 2, seed=SEED)
    assert not set(train.names) & set(bench.faces.names)


def test_benchmark_is_deterministic() -> None:
    kwargs = dict(n_folds=3, people_per_fold=4, images_per_person=(2, 4), pairs_per_class=3, seed=SEED)
    a, b = make_pairs_benchmark(**kwargs), make_pairs_benchmark(**kwargs)
    assert a.faces.images.tobytes() == b.faces.images.tobytes()
    assert all(np.array_equal(x.pairs, y.pairs) for x, y in zip(a.folds, b.folds))
    c = make_pairs_benchmark(**{**kwargs, "seed": SEED + 1})
    assert any(not np.array_equal(x.pairs, y.pairs) for x, y in zip(a.folds, c.folds))


def test_too_many_pairs_are_reduced_with_a_warning_and_impossible_ones_fail() -> None:
    with pytest.warns(UserWarning, match="pairs per class"):
        small = make_pairs_benchmark(n_folds=2, people_per_fold=2, images_per_person=(2, 2), pairs_per_class=300, seed=SEED)
    assert small.info["pairs_per_class"] == 2  # 2 people x 1 matched pair each
    assert all(len(f.pairs) == 4 for f in small.folds)
    with pytest.raises(ValueError, match="at least 2 images"):
        make_pairs_benchmark(n_folds=2, people_per_fold=3, images_per_person=(1, 1), seed=SEED)


def test_identity_shows_in_pixels(bench: PairsBenchmark) -> None:
    """Same-person images are closer than different-person images, on average, in raw pixels."""
    x = bench.faces.images[: 20 * 10, ::2, ::2].reshape(200, -1).astype(np.float32)
    y = bench.faces.labels[: 20 * 10]
    sq = (x * x).sum(1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0))
    same = y[:, None] == y[None, :]
    off_diagonal = ~np.eye(len(y), dtype=bool)
    within, between = dist[same & off_diagonal].mean(), dist[~same].mean()
    assert within < 0.9 * between
