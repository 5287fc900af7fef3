"""Symmetry group: derived permutation specs, function-preserving transforms, canonical forms."""

from __future__ import annotations

import math

import pytest
import torch

import wslviz as wv
from wslviz.core.arch import Architecture, mlp_spec
from wslviz.understand.symmetry import (
    SymmetryElement,
    SymmetryError,
    canonicalize,
    compose,
    equivalence_gap,
    group_size_log10,
    identity,
    inverse,
    layer_distances,
)

BN_CNN = Architecture({"input_shape": [1, 8, 8], "layers": [
    {"type": "conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": 3},
    {"type": "batchnorm", "num_features": 4},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    {"type": "conv2d", "in_channels": 4, "out_channels": 6, "kernel_size": 2},
    {"type": "relu"},
    {"type": "batchnorm", "num_features": 6},
    {"type": "flatten"},
    {"type": "linear", "in_features": 24, "out_features": 7},
    {"type": "layernorm", "normalized_shape": 7},
    {"type": "tanh"},
    {"type": "linear", "in_features": 7, "out_features": 3},
]})
GAP_CNN = Architecture({"input_shape": [3, 6, 6], "layers": [
    {"type": "conv2d", "in_channels": 3, "out_channels": 5, "kernel_size": 3, "padding": 1},
    {"type": "leaky_relu"},
    {"type": "conv2d", "in_channels": 5, "out_channels": 8, "kernel_size": 3, "stride": 2},
    {"type": "sin", "w0": 3.0},
    {"type": "global_avg_pool"},
    {"type": "linear", "in_features": 8, "out_features": 4},
]})
ARCHS = {
    "relu-mlp": Architecture(mlp_spec([2, 16, 16, 2])),
    "tanh-mlp": Architecture(mlp_spec([3, 8, 5, 3], "tanh")),
    "gelu-mlp": Architecture(mlp_spec([4, 6, 2], "gelu")),
    "bn-cnn": BN_CNN,
    "gap-cnn": GAP_CNN,
}


def random_weights(arch: Architecture, n: int = 4, seed: int = 0, scale: float = 0.3) -> torch.Tensor:
    """Random weights with positive BatchNorm running variances."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, arch.n_params, generator=gen) * scale
    for p in arch.layout:
        if p.role == "running_var":
            w[:, p.slice] = w[:, p.slice].abs() + 0.5
    return w


def test_spec_of_an_mlp_moves_rows_and_next_columns():
    spec = wv.permutation_spec(ARCHS["relu-mlp"])
    assert [g.size for g in spec.groups] == [16, 16]
    first = spec.groups[0]
    refs = [(r.name, r.axis, r.power) for r in first.refs]
    assert refs == [("0.weight", 0, 1), ("0.bias", 0, 1), ("2.weight", 1, -1)]
    assert first.kinds == ("permutation", "scale")
    assert ARCHS["relu-mlp"].perm_spec == spec


def test_spec_expands_flatten_into_blocks_and_follows_normalisation_layers():
    spec = BN_CNN.perm_spec
    conv2 = spec.groups[1]
    assert ("8.weight", 1, 4) in [(r.name, r.axis, r.block) for r in conv2.refs]  # 6 channels x 2x2 blocks
    names = {r.name for r in conv2.refs}
    assert {"6.weight", "6.bias", "6.running_mean", "6.running_var"} <= names
    # BatchNorm before the ReLU produces the pre-activation: the scale acts on it, not on the conv
    conv1 = {r.name: r.power for r in spec.groups[0].refs}
    assert conv1["0.weight"] == 0 and conv1["1.weight"] == 1 and conv1["1.running_var"] == 0
    # LayerNorm before tanh: signs allowed, scales not
    assert spec.groups[2].kinds == ("permutation", "sign")
    assert {g.activation for g in spec.groups} == {"relu", "tanh"}


def test_kinds_follow_the_activation():
    assert ARCHS["tanh-mlp"].perm_spec.groups[0].kinds == ("permutation", "sign")
    assert ARCHS["gelu-mlp"].perm_spec.groups[0].kinds == ("permutation",)
    assert GAP_CNN.perm_spec.groups[0].kinds == ("permutation", "scale")
    assert GAP_CNN.perm_spec.groups[1].kinds == ("permutation", "sign")


def test_spec_rejects_non_architectures():
    with pytest.raises(SymmetryError, match="needs an architecture"):
        wv.permutation_spec({"layers": []})


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_random_symmetry_preserves_the_function(name):
    arch = ARCHS[name]
    w = random_weights(arch)
    for seed in range(5):
        g = wv.random_symmetry(arch, seed=seed)
        moved = wv.apply_symmetry(arch, w, g)
        assert moved.shape == w.shape
        assert equivalence_gap(arch, w, moved) <= 1e-5
        assert (moved - w).norm() > 0.1 * w.norm()  # the weights really changed
        single = wv.apply_symmetry(arch, w[0], g)
        assert single.shape == w[0].shape and torch.equal(single, moved[0])


def test_symmetry_changes_the_function_when_broken():
    """Moving the first layer's rows without the matching columns of the next layer is not a symmetry."""
    arch = ARCHS["relu-mlp"]
    w = random_weights(arch, 1)[0]
    moved = wv.apply_symmetry(arch, w, wv.random_symmetry(arch, seed=1))
    broken = moved.clone()
    first = arch.layout[0].slice
    broken[first] = w[first]
    assert equivalence_gap(arch, w, moved) <= 1e-5
    assert equivalence_gap(arch, w, broken) > 1e-2


def test_random_symmetry_draws_only_valid_kinds():
    relu = wv.random_symmetry(ARCHS["relu-mlp"], seed=0)
    assert all((s > 0).all() and not torch.allclose(s, torch.ones_like(s)) for s in relu.scales)
    tanh = wv.random_symmetry(ARCHS["tanh-mlp"], seed=0)
    assert all(set(s.abs().tolist()) == {1.0} and (s < 0).any() for s in tanh.scales)
    gelu = wv.random_symmetry(ARCHS["gelu-mlp"], seed=0)
    assert all(torch.equal(s, torch.ones_like(s)) for s in gelu.scales)
    perm_only = wv.random_symmetry(ARCHS["relu-mlp"], seed=0, kinds=("permutation",))
    assert all(torch.equal(s, torch.ones_like(s)) for s in perm_only.scales)
    assert any(not torch.equal(p, torch.arange(len(p))) for p in perm_only.perms)
    with pytest.raises(SymmetryError, match="unknown symmetry kind"):
        wv.random_symmetry(ARCHS["relu-mlp"], kinds=("rotation",))


@pytest.mark.parametrize("name", ["relu-mlp", "bn-cnn", "gap-cnn"])
def test_compose_and_inverse(name):
    arch = ARCHS[name]
    w = random_weights(arch)
    g, h = wv.random_symmetry(arch, seed=1), wv.random_symmetry(arch, seed=2)
    both = wv.apply_symmetry(arch, w, compose(g, h))
    stepwise = wv.apply_symmetry(arch, wv.apply_symmetry(arch, w, h), g)
    torch.testing.assert_close(both, stepwise, atol=1e-5, rtol=1e-5)
    back = wv.apply_symmetry(arch, wv.apply_symmetry(arch, w, g), inverse(g))
    torch.testing.assert_close(back, w, atol=1e-5, rtol=1e-5)
    e = compose(inverse(g), g)
    assert all(torch.equal(p, torch.arange(len(p))) for p in e.perms)
    assert all(torch.allclose(s, torch.ones_like(s)) for s in e.scales)


def test_batched_elements_apply_one_element_per_model():
    arch = ARCHS["tanh-mlp"]
    w = random_weights(arch, 3)
    gs = [wv.random_symmetry(arch, seed=s) for s in range(3)]
    batched = SymmetryElement([torch.stack(p) for p in zip(*(g.perms for g in gs), strict=True)],
                              [torch.stack(s) for s in zip(*(g.scales for g in gs), strict=True)])
    out = wv.apply_symmetry(arch, w, batched)
    for i, g in enumerate(gs):
        assert torch.equal(out[i], wv.apply_symmetry(arch, w[i], g))
    with pytest.raises(SymmetryError, match="batched over 3 models"):
        wv.apply_symmetry(arch, w[:2], batched)


def test_bad_inputs_are_named():
    arch = ARCHS["relu-mlp"]
    with pytest.raises(SymmetryError, match="weights must be"):
        wv.apply_symmetry(arch, torch.zeros(5), identity(arch))
    with pytest.raises(SymmetryError, match="groups"):
        wv.apply_symmetry(arch, torch.zeros(arch.n_params), identity(ARCHS["gelu-mlp"]))


def test_group_size():
    assert group_size_log10(ARCHS["relu-mlp"]) == pytest.approx(2 * math.log10(math.factorial(16)))
    assert group_size_log10(BN_CNN) == pytest.approx(math.log10(math.factorial(4) * math.factorial(6) * 5040))


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_canonical_form_is_invariant(name):
    arch = ARCHS[name]
    w = random_weights(arch, 6, seed=3)
    canon = canonicalize(arch, w)
    assert equivalence_gap(arch, canon, w) <= 1e-5
    for seed in range(20):
        moved = wv.apply_symmetry(arch, w, wv.random_symmetry(arch, seed=seed))
        torch.testing.assert_close(canonicalize(arch, moved), canon, atol=1e-5, rtol=1e-5)


def test_canonical_form_per_kind_and_element():
    arch = ARCHS["relu-mlp"]
    w = random_weights(arch, 2)
    canon, c = canonicalize(arch, w, kinds=("permutation",), return_element=True)
    assert torch.equal(wv.apply_symmetry(arch, w, c), canon)
    assert all(torch.equal(s, torch.ones_like(s)) for s in c.scales)  # permutation only: no rescaling
    moved = wv.apply_symmetry(arch, w, wv.random_symmetry(arch, seed=5, kinds=("permutation",)))
    assert torch.equal(canonicalize(arch, moved, kinds=("permutation",)), canon)
    rows = canonicalize(arch, w[0]).reshape(-1)[arch.layout[0].slice].view(16, 2)
    bias = canonicalize(arch, w[0])[arch.layout[1].slice]
    torch.testing.assert_close(torch.cat([rows, bias[:, None]], 1).norm(dim=1), torch.ones(16))


def test_layer_distances():
    arch = ARCHS["relu-mlp"]
    a, b = random_weights(arch, 2)
    d = layer_distances(arch, a, b)
    assert list(d) == ["layer 0 (linear)", "layer 2 (linear)", "layer 4 (linear)", "total"]
    assert d["total"][0] == pytest.approx(float((a - b).norm()), rel=1e-5)
    assert sum(v[0] ** 2 for k, v in d.items() if k != "total") == pytest.approx(d["total"][0] ** 2, rel=1e-5)
