"""Equivariant metanetworks: equivariance of the layers and invariance of the networks under random elements
of a zoo's symmetry group (MLP, SIREN and CNN weight spaces), exact round trips of the weight-space cut, the
INR augmentation, and fitted metanetworks beating chance on small synthetic tasks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SMALL_CNN
from fixtures_formats import write_cnnzoo

import wslviz as wv
from wslviz.core.arch import Architecture, mlp_spec
from wslviz.core.evaluation import model_outputs
from wslviz.core.training import DIGITS_CNN
from wslviz.represent.features import weight_stats
from wslviz.represent.metanet.augment import coordinate_affine
from wslviz.represent.metanet.estimator import MetanetClassifier, MetanetRegressor
from wslviz.represent.metanet.layers import EquivariantLinear
from wslviz.represent.metanet.models import EquivariantMetanet, tensor_stats
from wslviz.represent.metanet.weightspace import MODES, WeightSpace, WeightSpaceError
from wslviz.represent.predict import predict_property

SMALL_CNN_ZOO = {  # the Small CNN Zoo's network (Unterthiner et al. 2020) on 1x12x12 inputs
    "input_shape": [1, 12, 12],
    "layers": [
        {"type": "conv2d", "in_channels": 1, "out_channels": 6, "kernel_size": 3, "stride": 2}, {"type": "relu"},
        {"type": "conv2d", "in_channels": 6, "out_channels": 5, "kernel_size": 3, "stride": 2}, {"type": "relu"},
        {"type": "global_avg_pool"},
        {"type": "linear", "in_features": 5, "out_features": 10},
    ],
}
SPACES = {
    "mlp relu": mlp_spec([3, 7, 5, 2]),
    "siren": mlp_spec([2, 9, 9, 1], "sin", w0=30.0),
    "one hidden layer": mlp_spec([2, 6, 1], "sin", w0=10.0),
    "cnn flatten": SMALL_CNN,
    "digits cnn": DIGITS_CNN,
    "cnn global pool": SMALL_CNN_ZOO,
}
TOL = 1e-5


def weights_of(arch: Architecture, n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, arch.n_params, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(params=sorted(SPACES))
def arch(request) -> Architecture:
    return Architecture(SPACES[request.param])


@pytest.mark.parametrize("mode", MODES)
def test_features_round_trip_exactly(arch, mode):
    space = WeightSpace(arch)
    w = weights_of(arch)
    assert torch.equal(space.unfeatures(space.features(w, mode), mode), w)  # reshapes and copies only


@pytest.mark.parametrize("mode", MODES)
def test_equivariant_layer_moves_with_the_permutation(arch, mode):
    """layer(g·θ) = g·layer(θ) for an equivariant map from the weight space to itself (NP / DWSNets-style)."""
    torch.manual_seed(0)
    space = WeightSpace(arch)
    schema = space.schema(mode)
    layer = EquivariantLinear(schema, schema)
    w = weights_of(arch)
    g = wv.random_symmetry(arch, seed=3, kinds=("permutation",))
    wg = wv.apply_symmetry(arch, w, g)
    with torch.no_grad():
        out = space.unfeatures(layer(space.features(w, mode)), mode)
        out_g = space.unfeatures(layer(space.features(wg, mode)), mode)
    torch.testing.assert_close(out_g, wv.apply_symmetry(arch, out, g), rtol=0, atol=TOL)
    # not vacuous: the permutation moved the input and the layer's output
    assert (wg - w).abs().max() > 0.1 and (out_g - out).abs().max() > 1e-3


@pytest.mark.parametrize("mode", MODES)
def test_metanetwork_is_invariant(arch, mode):
    torch.manual_seed(1)
    net = EquivariantMetanet(WeightSpace(arch), mode, out_dim=3, hidden=8, depth=2).eval()
    w = weights_of(arch, n=6)
    with torch.no_grad():
        base = net(w)
        for seed in range(3):
            g = wv.random_symmetry(arch, seed=seed, kinds=("permutation",))
            torch.testing.assert_close(net(wv.apply_symmetry(arch, w, g)), base, rtol=0, atol=TOL)
        assert (net(w.flip(0)) - base.flip(0)).abs().max() < TOL and (base[0] - base[1]).abs().max() > 1e-4


def test_hnp_keeps_inputs_and_outputs_apart_np_does_not():
    """Permuting the input coordinates is a symmetry for NFN-NP (all neurons permutable), not for DWSNets-style
    HNP objects (input and output units keep their identity)."""
    arch = Architecture(mlp_spec([3, 5, 4, 2]))
    space = WeightSpace(arch)
    w = weights_of(arch)
    ws, bs = space.split(w)
    ws[0] = ws[0][:, :, [2, 0, 1]]  # swap the network's inputs
    swapped = space.join(ws, bs)
    torch.manual_seed(0)
    nets = {mode: EquivariantMetanet(space, mode, out_dim=2, hidden=8, depth=2).eval() for mode in MODES}
    with torch.no_grad():
        torch.testing.assert_close(nets["np"](swapped), nets["np"](w), rtol=0, atol=TOL)
        assert (nets["hnp"](swapped) - nets["hnp"](w)).abs().max() > 1e-4


def test_normalisation_layers_are_refused():
    spec = {"input_shape": [4], "layers": [{"type": "linear", "in_features": 4, "out_features": 3},
                                           {"type": "batchnorm", "num_features": 3}, {"type": "relu"},
                                           {"type": "linear", "in_features": 3, "out_features": 2}]}
    with pytest.raises(WeightSpaceError, match="batchnorm"):
        WeightSpace(Architecture(spec))


def synthetic_task(n: int = 480, seed: int = 0) -> tuple[Architecture, torch.Tensor, np.ndarray]:
    """Random 2-8-1 MLPs; the target Σ_j w2_j b1_j pairs each hidden unit's bias with its outgoing weight:
    invariant to permutations, and out of reach of any single flat coordinate."""
    arch = Architecture(mlp_spec([2, 8, 1]))
    w = weights_of(arch, n, seed)
    d = arch.unflatten(w)
    return arch, w, (d["2.weight"][:, 0, :] * d["0.bias"]).sum(1).numpy()


FAST = {"hidden": 16, "depth": 2, "max_epochs": 20, "patience": 20, "lr": 3e-3, "batch_size": 64}


@pytest.mark.parametrize("model", ["nfn_np", "dws"])
def test_fitted_metanetwork_beats_chance(model):
    arch, w, target = synthetic_task()
    labels = (target > 0).astype(int)
    clf = MetanetClassifier(arch, model=model, random_state=0, **FAST).fit(w[:360], labels[:360])
    assert clf.score(w[360:], labels[360:]) > 0.7  # chance is ~0.5
    assert 1 <= clf.best_epoch_ <= clf.n_epochs_ <= FAST["max_epochs"] and len(clf.history_) == clf.n_epochs_
    proba = clf.predict_proba(w[360:])
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)
    reg = MetanetRegressor(arch, model=model, random_state=0, **FAST).fit(w[:360], target[:360])
    assert reg.score(w[360:], target[360:]) > 0.3


def test_fit_is_deterministic_and_reports_progress():
    arch, w, target = synthetic_task(n=120)
    calls = []
    opts = {**FAST, "max_epochs": 3}
    a = MetanetRegressor(arch, random_state=5, progress=lambda d, t: calls.append((d, t)), **opts).fit(w, target)
    b = MetanetRegressor(arch, random_state=5, **opts).fit(w, target)
    np.testing.assert_array_equal(a.predict(w), b.predict(w))
    assert calls[-1] == (3, 3) and [d for d, _ in calls[:-1]] == list(range(1, a.n_epochs_ + 1))


@pytest.mark.parametrize(("spec", "kinds"), [(mlp_spec([2, 6, 1], "sin", w0=10.0), ("permutation", "sign")),
                                             (mlp_spec([3, 6, 5, 2]), ("permutation", "scale"))])
def test_fitted_pipeline_is_invariant_to_the_whole_group(spec, kinds):
    """Canonicalised signs (sin) or scales (ReLU) plus permutation-equivariant layers: a fitted estimator's
    output is unchanged by a random element of the zoo's full symmetry group."""
    arch = Architecture(spec)
    w = weights_of(arch, n=64)
    y = np.arange(64) % 3
    canon = ("sign",) if "sign" in kinds else ("scale",)
    opts = {**FAST, "max_epochs": 2}
    clf = MetanetClassifier(arch, model="dws", canonicalize=canon, random_state=0, **opts).fit(w, y)
    g = wv.random_symmetry(arch, seed=7, kinds=kinds)
    moved = wv.apply_symmetry(arch, w, g)
    assert wv.equivalence_gap(arch, w, moved) < 1e-4  # same functions, other weights
    np.testing.assert_allclose(clf.decision_function(moved), clf.decision_function(w), rtol=0, atol=TOL)


def test_flat_mlp_sees_permutations_and_augmentation_draws_group_elements():
    arch, w, target = synthetic_task(n=64)
    g = wv.random_symmetry(arch, seed=1, kinds=("permutation",))
    flat = MetanetRegressor(arch, model="flat_mlp", random_state=0, **{**FAST, "max_epochs": 2}).fit(w, target)
    assert np.abs(flat.predict(wv.apply_symmetry(arch, w, g)) - flat.predict(w)).max() > 1e-4
    aug = MetanetRegressor(arch, model="flat_mlp_aug", random_state=0, **{**FAST, "max_epochs": 2}).fit(w, target)
    assert aug.n_epochs_ == 2


def test_coordinate_augmentation_moves_the_image():
    """The first-layer rewrite computes f(A x + t): the rendered augmented INR equals the original INR on the
    transformed grid."""
    arch = Architecture(mlp_spec([2, 6, 1], "sin", w0=10.0))
    w = weights_of(arch, n=5) * 0.5
    gen = torch.Generator().manual_seed(0)
    moved = coordinate_affine(arch, w, gen, rotation=20.0, zoom=0.2, shift=0.2)
    gen = torch.Generator().manual_seed(0)  # the same draws again, to rebuild A and t
    angle = (torch.rand(5, generator=gen) * 2 - 1) * np.radians(20.0)
    scale = 1 + (torch.rand(5, generator=gen) * 2 - 1) * 0.2
    t = (torch.rand(5, 2, generator=gen) * 2 - 1) * 0.2
    x = torch.rand(50, 2) * 2 - 1
    for b in range(5):
        c, s = torch.cos(angle[b]) * scale[b], torch.sin(angle[b]) * scale[b]
        xt = x @ torch.tensor([[c, -s], [s, c]]).T + t[b]
        torch.testing.assert_close(model_outputs(arch, moved[b], x), model_outputs(arch, w[b], xt), rtol=0, atol=1e-5)


def test_predict_property_with_a_metanetwork_on_a_small_cnn_zoo(tmp_path):
    """The imported Small CNN Zoo layout (conv, global average pool, dense) through predict_property."""
    write_cnnzoo(tmp_path / "cnnzoo", n_models=10, steps=(0, 50, 100))
    zoo = wv.load_zoo(tmp_path / "cnnzoo")
    seen = []
    r = predict_property(zoo, "test_acc", model="nfn_np", n_splits=2, progress=lambda d, t: seen.append((d, t)),
                         metanet_options={**FAST, "max_epochs": 3})
    assert r["kind"] == "regression" and r["features"] == "weights" and r["n_rows"] == zoo.n_checkpoints
    assert np.isfinite(r["predictions"]).all() and r["importances"] is None
    assert seen[-1] == (6, 6)


@pytest.mark.parametrize("mode", MODES)
def test_hybrid_stats_head_is_invariant(arch, mode):
    """The head that also reads per-tensor statistics (standardised by fitted buffers) stays invariant, and the
    statistics are those of the ``stats`` features."""
    torch.manual_seed(2)
    space = WeightSpace(arch)
    net = EquivariantMetanet(space, mode, out_dim=2, hidden=8, depth=2, stats=True).eval()
    w = weights_of(arch, n=6)
    net.fit_stats(net.with_stats(weights_of(arch, n=16, seed=9)))
    with torch.no_grad():
        base = net(net.with_stats(w))
        for seed in range(3):
            g = wv.random_symmetry(arch, seed=seed, kinds=("permutation",))
            torch.testing.assert_close(net(net.with_stats(wv.apply_symmetry(arch, w, g))), base, rtol=0, atol=TOL)
    assert (base[0] - base[1]).abs().max() > 1e-4
    if all(p.role in ("weight", "bias") for p in arch.layout):
        np.testing.assert_allclose(tensor_stats(space, w).double().numpy(), weight_stats(arch, w), rtol=0, atol=1e-6)


def test_levers_hybrid_ensemble_rank_and_cosine():
    """Hybrid head, a 3-seed ensemble (the mean of its members), rank targets (predictions are training-target
    quantiles) and the cosine schedule all fit, and the ensemble is invariant to permutations."""
    arch, w, target = synthetic_task()
    opts = FAST
    ens = MetanetRegressor(arch, model="dws", stats=True, n_ensemble=3, schedule="cosine", random_state=0,
                           **opts).fit(w[:360], target[:360])
    members = ens.net_.members
    assert len(members) == 3 and len(ens.val_rows_) > 0 and set(ens.val_rows_) <= set(range(360))
    x = ens._prepare(w[360:])
    with torch.no_grad():
        torch.testing.assert_close(ens.net_(x), torch.stack([m(x) for m in members]).mean(0))
    g = wv.random_symmetry(arch, seed=4, kinds=("permutation",))
    np.testing.assert_allclose(ens.predict(wv.apply_symmetry(arch, w[360:], g)), ens.predict(w[360:]),
                               rtol=0, atol=TOL)
    assert ens.score(w[360:], target[360:]) > 0.3
    rank = MetanetRegressor(arch, model="nfn_np", rank_targets=True, random_state=0, **opts).fit(w[:360],
                                                                                                target[:360])
    pred = rank.predict(w[360:])
    assert pred.min() >= target[:360].min() and pred.max() <= target[:360].max()
    assert np.corrcoef(pred, target[360:])[0, 1] > 0.5
    with pytest.raises(ValueError, match="equivariant"):
        MetanetRegressor(arch, model="flat_mlp", stats=True, **opts).fit(w[:64], target[:64])
