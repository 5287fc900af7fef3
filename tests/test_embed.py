"""Projections: standardisation, PCA/t-SNE/UMAP shapes and determinism, out-of-sample transforms."""

from __future__ import annotations

import numpy as np
import pytest

from wslviz.represent.projection import Projector, cache_key, project, standardise


def blobs(n: int = 60, d: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (3, d))
    return centres[np.arange(n) % 3] + rng.normal(0, 0.3, (n, d))


def test_standardise_imputes_and_drops_constant_columns():
    x = np.array([[1.0, 5.0, np.nan], [3.0, 5.0, 2.0], [5.0, 5.0, 4.0]])
    z = standardise(x)
    assert z.shape == (3, 2)  # the constant column is gone
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(0), 1)
    assert z[0, 1] == 0  # NaN became the column mean


def test_pca_transform_of_training_rows_equals_fit():
    x = blobs()
    proj = Projector("pca", 3, seed=0)
    y = proj.fit_transform(x)
    assert y.shape == (60, 3)
    np.testing.assert_allclose(proj.transform(x), y, atol=1e-9)
    # PCA coordinates keep the standardised distances along the first axis's direction: variance is ordered
    assert np.all(np.diff(y.var(0)) <= 1e-12)
    assert proj.explained_variance_ratio.sum() <= 1 + 1e-12


def test_pca_pads_when_fewer_axes_than_dims():
    x = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])
    y = project(x, "pca", 3)  # two features: two principal axes, the third coordinate is zero
    assert y.shape == (3, 3) and np.all(y[:, 2] == 0) and np.all(y[:, :2].std(0) > 0)


def test_tsne_has_no_transform_and_is_deterministic():
    x = blobs(30)
    a, b = project(x, "tsne", 2, seed=1), project(x, "tsne", 2, seed=1)
    np.testing.assert_array_equal(a, b)
    proj = Projector("tsne", 2).fit(x)
    with pytest.raises(NotImplementedError):
        proj.transform(x)


def test_umap_places_new_points_near_their_cluster():
    x = blobs(90)
    proj = Projector("umap", 2, seed=0)
    y = proj.fit_transform(x)
    assert y.shape == (90, 2)
    new = proj.transform(x[:3] + 0.01)  # near-copies of one point per cluster
    for i in range(3):
        same = y[np.arange(90) % 3 == i].mean(0)
        others = [y[np.arange(90) % 3 == j].mean(0) for j in range(3) if j != i]
        assert np.linalg.norm(new[i] - same) < min(np.linalg.norm(new[i] - o) for o in others)


def test_errors_and_keys():
    with pytest.raises(ValueError, match="unknown projection"):
        project(blobs(), "mds")
    with pytest.raises(ValueError, match="dim"):
        Projector("pca", 4)
    with pytest.raises(ValueError, match="at least 2"):
        project(np.zeros((1, 3)), "pca")
    assert project(np.ones((5, 3)), "pca").tolist() == np.zeros((5, 2)).tolist()
    assert cache_key("abc", "stats", "pca", 2, 0) != cache_key("abc", "stats", "pca", 3, 0)
