"""Projections: standardisation, PCA/t-SNE/UMAP shapes and determinism, out-of-sample transforms, fits kept
on disk; the nearest-neighbour table of one checkpoint."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wslviz.represent.projection import (
    Projection,
    ProjectionStore,
    Projector,
    cache_key,
    load_or_fit,
    project,
    rows_digest,
    standardise,
    tsne_backend,
)
from wslviz.represent.retrieval import neighbour_table


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


def test_tsne_is_deterministic_and_transforms_only_with_opentsne():
    x = blobs(30)
    a, b = project(x, "tsne", 2, seed=1), project(x, "tsne", 2, seed=1)
    np.testing.assert_array_equal(a, b)
    proj = Projector("tsne", 2).fit(x)
    if tsne_backend() == "openTSNE":
        assert proj.transform(x[:4]).shape == (4, 2)
    else:
        with pytest.raises(NotImplementedError, match="openTSNE"):
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


def test_fits_are_kept_on_disk(tmp_path):
    store = ProjectionStore(tmp_path / "fits")
    calls = []

    def features() -> np.ndarray:
        calls.append(1)
        return blobs()

    key = cache_key("abc", "stats", "pca", 2, 0, rows=rows_digest(np.arange(60)))
    first = load_or_fit(features, "pca", 2, 0, store, key)
    again = load_or_fit(features, "pca", 2, 0, store, key)
    assert len(calls) == 1 and not first.from_disk and again.from_disk  # features not even computed again
    np.testing.assert_array_equal(again.coords, first.coords)
    np.testing.assert_array_equal(again.explained_variance_ratio, first.explained_variance_ratio)
    assert again.fit_seconds == first.fit_seconds
    assert load_or_fit(features, "umap", 2, 0, store, "other").explained_variance_ratio is None
    assert ProjectionStore(tmp_path / "fits").load("other").explained_variance_ratio is None
    (tmp_path / "fits" / "broken.npz").write_bytes(b"not a zip")
    assert store.load("broken") is None and store.load("missing") is None
    (tmp_path / "file").write_text("")
    assert not ProjectionStore(tmp_path / "file" / "sub").save("k", Projection(np.zeros((2, 2)), None, 0.0))
    assert rows_digest(np.arange(5)) != rows_digest(np.arange(6))


def test_neighbour_table_excludes_the_same_model():
    x = blobs(60)
    meta = pd.DataFrame({"model_id": np.arange(60) // 3, "epoch": np.arange(60) % 3})  # models 0..19, 3 epochs
    table = neighbour_table(x, meta, 4, k=5)
    assert list(table.columns) == ["row", "distance", "model_id", "epoch"] and len(table) == 5
    assert (table["model_id"] != 1).all() and table["distance"].is_monotonic_increasing
    assert table["model_id"].tolist() == (table["row"] // 3).tolist()
    z = standardise(x)
    np.testing.assert_allclose(table["distance"], np.linalg.norm(z[table["row"]] - z[4], axis=1))
    everyone = neighbour_table(x, meta, 4, k=5, exclude_same_model=False)
    assert 4 not in everyone["row"].tolist() and len(everyone) == 5
