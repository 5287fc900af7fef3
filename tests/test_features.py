"""Feature sets: exact values against numpy, invariance under weight-space symmetries, flags and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_zoo
from rounding import assert_rounding_close

from wslviz.core.arch import Architecture, mlp_spec
from wslviz.represent.features import (
    KINDS,
    FeatureError,
    available_kinds,
    compute_features,
    feature_names,
    feature_set,
    powerlaw_alpha,
    spectral_features,
    weight_stats,
)
from wslviz.understand.symmetry import apply_symmetry, random_symmetry


def test_stats_match_numpy(random_cnn_zoo):
    zoo = random_cnn_zoo
    x = compute_features(zoo, "stats")
    names = feature_names(zoo, "stats")
    assert x.shape == (zoo.n_checkpoints, len(names)) == (zoo.n_checkpoints, 7 * 6)
    w = zoo.weights.double().numpy()
    for p in zoo.arch.layout:
        t = w[:, p.slice]
        col = names.index(f"{p.name}.mean")
        expected = np.column_stack([t.mean(1), t.std(1), *np.quantile(t, [0, 0.25, 0.5, 0.75, 1], axis=1)])
        np.testing.assert_allclose(x[:, col:col + 7], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.kernels
def test_stats_chunked_equals_whole(random_cnn_zoo, monkeypatch):
    import wslviz.represent.features as F

    whole = weight_stats(random_cnn_zoo.arch, random_cnn_zoo.weights)
    monkeypatch.setattr(F, "CHUNK_ELEMENTS", random_cnn_zoo.n_params * 5)  # chunks of 5 models
    calls = []
    chunked = weight_stats(random_cnn_zoo.arch, random_cnn_zoo.weights, progress=lambda d, t: calls.append((d, t)))
    # other batches of rows: the per-tensor means and deviations (sums of at most P terms) may round differently
    assert_rounding_close(chunked, whole, random_cnn_zoo.n_params)
    assert calls[-1] == (random_cnn_zoo.n_checkpoints, random_cnn_zoo.n_checkpoints) and len(calls) == 3


@pytest.mark.parametrize("kind", ["stats", "spectral", "functional"])
def test_invariant_features_ignore_permutations(random_cnn_zoo, kind):
    zoo = random_cnn_zoo
    g = random_symmetry(zoo.arch, seed=3, kinds=("permutation",))
    permuted = zoo.subset(np.arange(zoo.n_checkpoints))
    permuted.weights = apply_symmetry(zoo.arch, zoo.weights, g)
    assert not torch.allclose(permuted.weights, zoo.weights)
    np.testing.assert_allclose(compute_features(permuted, kind), compute_features(zoo, kind), rtol=1e-4, atol=1e-5)
    if kind == "stats":  # flat weights do change
        assert not np.allclose(compute_features(permuted, "flat"), compute_features(zoo, "flat"))


def test_functional_invariant_under_scaling_and_is_probabilities(random_mlp_zoo):
    zoo = random_mlp_zoo
    g = random_symmetry(zoo.arch, seed=1)  # permutation and positive rescaling of ReLU units
    moved = zoo.subset(np.arange(zoo.n_checkpoints))
    moved.weights = apply_symmetry(zoo.arch, zoo.weights, g)
    a, b = compute_features(zoo, "functional", n_probe=32), compute_features(moved, "functional", n_probe=32)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert a.shape == (zoo.n_checkpoints, 32 * 2)
    np.testing.assert_allclose(a.reshape(len(a), 32, 2).sum(-1), 1.0, atol=1e-6)


def test_spectral_matches_svd_and_flags_small_layers():
    arch = Architecture(mlp_spec([8, 64, 64, 3]))
    w = torch.randn(4, arch.n_params)
    x = spectral_features(arch, w)
    from wslviz.represent.features import spectral_names

    names = spectral_names(arch)
    for p in [q for q in arch.layout if q.role == "weight"]:
        s = np.linalg.svd(w[:, p.slice].reshape(4, *p.shape).double().numpy(), compute_uv=False)
        col = names.index(f"{p.name}.spectral_norm")
        np.testing.assert_allclose(x[:, col], s[:, 0], rtol=1e-5)
        np.testing.assert_allclose(x[:, col + 1], (s**2).sum(1) / s[:, 0] ** 2, rtol=1e-5)
        fitted = min(p.shape) >= 50
        assert (x[:, col + 3] == float(fitted)).all()
        assert np.isfinite(x[:, col + 2]).all() == fitted and (np.isnan(x[:, col + 2]).all() != fitted)


def test_powerlaw_alpha_recovers_exponent():
    # Pareto samples with density ~ x^-alpha: x = (1 - u)^(-1 / (alpha - 1))
    g = torch.Generator().manual_seed(0)
    for alpha in (2.0, 3.5):
        u = torch.rand(3, 20000, generator=g, dtype=torch.float64)
        x = (1 - u) ** (-1 / (alpha - 1))
        est = powerlaw_alpha(x)
        assert torch.allclose(est, torch.full_like(est, alpha), atol=0.1), est


def test_aligned_maps_permuted_copies_onto_the_reference(mlp_arch, moons_task):
    base = random_zoo(mlp_arch, moons_task, n_models=1, epochs=(0,))
    w = base.weights[0]
    copies = torch.stack([w] + [apply_symmetry(mlp_arch, w, random_symmetry(mlp_arch, seed=s)) for s in range(4)])
    zoo = random_zoo(mlp_arch, moons_task, n_models=5, epochs=(0,))
    zoo.weights = copies
    x = compute_features(zoo, "aligned", reference=0)
    np.testing.assert_allclose(x, np.tile(w.double().numpy(), (5, 1)), atol=1e-5)
    assert not np.allclose(compute_features(zoo, "flat")[1:], w.numpy())


def test_flat_names_and_errors(random_mlp_zoo, mlp_arch):
    fs = feature_set(random_mlp_zoo, "flat")
    np.testing.assert_array_equal(fs.values, random_mlp_zoo.weights.double().numpy())
    assert len(fs.names) == mlp_arch.n_params and fs.names[0] == "0.weight[0]"
    with pytest.raises(FeatureError, match="unknown feature kind"):
        compute_features(random_mlp_zoo, "nope")
    no_task = random_zoo(mlp_arch, None)
    with pytest.raises(FeatureError, match="no task"):
        compute_features(no_task, "functional")
    assert set(KINDS) == {"flat", "aligned", "stats", "spectral", "functional", "invariant", "learned"}
    assert "invariant" not in available_kinds(random_mlp_zoo)  # permutations only: no continuous symmetry
    with pytest.raises(FeatureError, match="no continuous symmetry"):
        compute_features(random_mlp_zoo, "invariant")


def test_learned_features_shape(random_mlp_zoo):
    x = compute_features(random_mlp_zoo, "learned", latent_dim=4, steps=30)
    assert x.shape == (random_mlp_zoo.n_checkpoints, 4) and np.isfinite(x).all()


def test_row_quantiles_match_numpy_and_take_rows_past_torch_quantile_s_limit():
    from wslviz.represent.features import QUANTILES, row_quantiles

    g = torch.Generator().manual_seed(0)
    t = torch.randn(3, 1001, generator=g)
    q = torch.tensor(QUANTILES + (0.1, 0.9))
    np.testing.assert_allclose(row_quantiles(t, q).numpy(), np.quantile(t.numpy(), q.numpy(), axis=1).T, rtol=1e-6,
                               atol=1e-6)
    big = torch.arange(2**24 + 3, dtype=torch.float32)[None]  # more than torch.quantile accepts
    assert row_quantiles(big, torch.tensor([0.0, 0.5, 1.0])).tolist() == [[0.0, (2**24 + 2) / 2, 2**24 + 2]]
