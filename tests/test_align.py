"""Alignment: planted symmetries are undone exactly; every alignment keeps the function."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SMALL_CNN, sample_zoo
from rounding import assert_rounding_close
from test_symmetry import BN_CNN, GAP_CNN, random_weights

import wslviz as wv
from wslviz.core.arch import Architecture, mlp_spec
from wslviz.understand.align import align_to_average, align_zoo, merge, reset_batchnorm, symmetry_spread
from wslviz.understand.symmetry import equivalence_gap, inverse, probe_inputs

MLPS = [
    Architecture(mlp_spec([2, 16, 16, 2])),
    Architecture(mlp_spec([5, 32, 3])),
    Architecture(mlp_spec([3, 8, 12, 8, 4], "tanh")),
    Architecture(mlp_spec([4, 10, 10, 3], "leaky_relu")),
    Architecture(mlp_spec([2, 6, 9, 2], "gelu")),
]
CNNS = [Architecture(SMALL_CNN), BN_CNN, GAP_CNN]


def _recovery(archs: list[Architecture], trials: int = 100) -> int:
    """Planted permutation + rescaling/sign flip of a random model, undone by weight matching."""
    recovered = 0
    for t in range(trials):
        arch = archs[t % len(archs)]
        reference = random_weights(arch, 1, seed=t)[0]
        planted = wv.random_symmetry(arch, seed=10_000 + t)
        other = wv.apply_symmetry(arch, reference, planted)
        aligned, g = wv.weight_matching(arch, reference, other, seed=t, return_perm=True)
        assert equivalence_gap(arch, aligned, other, probe_inputs(arch, 32)) <= 1e-5
        exact = (aligned - reference).abs().max() <= 1e-5
        same_element = all(torch.equal(p, q) for p, q in zip(g.perms, inverse(planted).perms, strict=True))
        recovered += int(exact and same_element)
    return recovered


def test_planted_permutation_and_scaling_recovered_in_mlps():
    assert _recovery(MLPS) == 100


def test_planted_permutation_and_scaling_recovered_in_cnns():
    assert _recovery(CNNS) == 100


def test_independent_models_keep_their_function_and_get_closer():
    arch = MLPS[0]
    reference, other = random_weights(arch, 2, seed=7)
    for kinds in (("permutation",), ("permutation", "scale", "sign")):
        aligned = wv.weight_matching(arch, reference, other, kinds=kinds)
        assert equivalence_gap(arch, aligned, other) <= 1e-5
    # plain permutation matching maximises <reference, P other>, i.e. never moves further away
    plain = wv.weight_matching(arch, reference, other, kinds=("permutation",))
    assert (plain - reference).norm() < (other - reference).norm()
    torch.testing.assert_close(wv.weight_matching(arch, reference, reference), reference, atol=1e-6, rtol=0)


@pytest.mark.kernels
def test_batched_matching_equals_one_by_one():
    """The same permutations and scales in a batch of 4 as alone; the costs and norms behind them are batched sums,
    which round differently with the batch, so the weights agree to float32 rounding (sums of at most P terms; a
    different permutation would move whole rows)."""
    arch = BN_CNN
    reference = random_weights(arch, 1, seed=1)[0]
    others = random_weights(arch, 4, seed=2)
    batched = wv.weight_matching(arch, reference, others, seed=3)
    for i in range(4):
        assert_rounding_close(batched[i], wv.weight_matching(arch, reference, others[i], seed=3), arch.n_params)


def test_activation_matching_recovers_planted_symmetry(moons_task, digits_task):
    cases = [(Architecture(mlp_spec([2, 12, 12, 2], "tanh")), moons_task),
             (Architecture(SMALL_CNN), digits_task)]
    for arch, task in cases:
        for t in range(5):
            reference = random_weights(arch, 1, seed=t)[0]
            other = wv.apply_symmetry(arch, reference, wv.random_symmetry(arch, seed=t))
            aligned = wv.activation_matching(arch, task, reference, other, n_samples=256, seed=t)
            assert equivalence_gap(arch, aligned, other) <= 1e-5
            if arch.activations == ["tanh"]:  # no dead units: the pairing is unique
                torch.testing.assert_close(aligned, reference, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="needs data"):
        wv.activation_matching(arch, None, reference, other)


def test_activation_matching_keeps_function_of_independent_models(digits_task):
    arch = BN_CNN
    reference, other = random_weights(arch, 2, seed=4)
    aligned = wv.activation_matching(arch, digits_task, reference, other)
    assert equivalence_gap(arch, aligned, other) <= 1e-5


@pytest.mark.parametrize("method", ["weight", "activation"])
def test_align_zoo(method, moons_task):
    arch = MLPS[0]
    reference = random_weights(arch, 1, seed=0)[0]
    zoo = torch.cat([random_weights(arch, 3, seed=1),
                     wv.apply_symmetry(arch, reference, wv.random_symmetry(arch, seed=2)).unsqueeze(0)])
    calls = []
    aligned = align_zoo(arch, zoo, reference, method=method, task=moons_task, chunk_size=2,
                        progress=lambda d, t: calls.append((d, t)))
    assert aligned.shape == zoo.shape
    assert equivalence_gap(arch, aligned, zoo) <= 1e-5
    assert calls == [(2, 4), (4, 4)]
    if method == "weight":
        torch.testing.assert_close(aligned[3], reference, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="unknown alignment method"):
        align_zoo(arch, zoo, reference, method="magic")


def test_align_to_average_keeps_functions():
    arch = MLPS[2]
    zoo = random_weights(arch, 5, seed=9)
    aligned = align_to_average(arch, zoo, n_iter=3)
    assert equivalence_gap(arch, aligned, zoo) <= 1e-5
    spread = lambda w: (w - w.mean(0)).norm()
    plain = align_to_average(arch, zoo, n_iter=3, kinds=("permutation",))
    assert spread(plain) < spread(zoo)


def test_merge_of_symmetric_copies_is_the_model():
    arch = BN_CNN
    theta = random_weights(arch, 1, seed=5)[0]
    copies = torch.stack([wv.apply_symmetry(arch, theta, wv.random_symmetry(arch, seed=s)) for s in range(4)])
    merged = merge(arch, copies, reference=theta)
    no_bn = [p.slice for p in arch.layout if p.role not in ("running_mean", "running_var")]
    for s in no_bn:
        torch.testing.assert_close(merged[s], theta[s], atol=1e-5, rtol=0)
    # without data the running statistics are reset to mean 0, variance 1
    for p in arch.layout:
        if p.role in ("running_mean", "running_var"):
            assert torch.all(merged[p.slice] == (0.0 if p.role == "running_mean" else 1.0))


def test_reset_batchnorm_from_data_matches_module_statistics(digits_task):
    """The running statistics become those nn.BatchNorm records in train mode: the mean and the unbiased variance
    of each BatchNorm's input (one reset for every kind of architecture)."""
    arch = BN_CNN
    w = reset_batchnorm(arch, random_weights(arch, 1, seed=6)[0], digits_task, n_samples=300)
    model = arch.build(w)
    x = digits_task.x_train[:300]
    h1 = model[0](x)
    torch.testing.assert_close(model[1].running_mean, h1.mean((0, 2, 3)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model[1].running_var, h1.var((0, 2, 3), unbiased=True), atol=1e-5, rtol=1e-5)
    h6 = model[:6](x)  # the second BatchNorm sees its inputs after the first one was reset
    torch.testing.assert_close(model[6].running_mean, h6.mean((0, 2, 3)), atol=1e-5, rtol=1e-5)


def test_merge_without_reference_aligns_to_the_running_average(digits_task):
    arch = Architecture(SMALL_CNN)
    theta = random_weights(arch, 1, seed=8)[0]
    copies = torch.stack([wv.apply_symmetry(arch, theta, wv.random_symmetry(arch, seed=s)) for s in range(3)])
    merged = merge(arch, copies)
    torch.testing.assert_close(merged, copies[0], atol=1e-5, rtol=0)  # every copy aligns onto the first
    assert equivalence_gap(arch, merged, theta) <= 1e-5


KIND_CHAINS = [("permutation",), ("permutation", "scale"), ("permutation", "scale", "sign")], \
              [("permutation",), ("permutation", "sign"), ("permutation", "scale", "sign")]


@pytest.mark.parametrize("arch", MLPS[:4] + CNNS, ids=lambda a: a.describe())
def test_undoing_more_kinds_of_symmetry_never_moves_farther(arch):
    """Weight matching minimises the distance to the reference over a group; a larger group (more kinds)
    must never end farther away, model by model, and the function stays."""
    reference = random_weights(arch, 1, seed=11)[0]
    others = random_weights(arch, 6, seed=12)
    for chain in KIND_CHAINS:
        previous = (others - reference).norm(dim=1)
        for kinds in chain:
            aligned = wv.weight_matching(arch, reference, others, kinds=kinds)
            distance = (aligned - reference).norm(dim=1)
            assert (distance <= previous * (1 + 1e-6)).all(), (kinds, distance, previous)
            assert equivalence_gap(arch, aligned, others, probe_inputs(arch, 32)) <= 1e-4
            previous = distance


@pytest.mark.parametrize("name", ["moons-mlp", "spirals-tanh"])
def test_scale_and_sign_bring_trained_models_closer(name):
    """On trained zoos (ReLU: scales; tanh: signs) undoing the extra symmetry is strictly closer in the
    median, for distances to the reference and for the zoo's spread, and never farther for any model."""
    zoo = sample_zoo(name)
    w = zoo.weights[torch.as_tensor(zoo.final_index()[:12])].float()
    plain = (align_zoo(zoo.arch, w[1:], w[0], kinds=("permutation",)) - w[0]).norm(dim=1)
    full = (align_zoo(zoo.arch, w[1:], w[0]) - w[0]).norm(dim=1)
    assert (full <= plain * (1 + 1e-6)).all()
    assert full.median() < plain.median()
    spread = symmetry_spread(zoo.arch, w)
    assert np.median(spread["permutations + scale/sign"]) < np.median(spread["permutations"]) \
        < np.median(spread["as trained"])


def test_device_cpu_is_the_default_path(digits_task):
    arch = BN_CNN
    reference, other = random_weights(arch, 2, seed=6)
    torch.testing.assert_close(wv.weight_matching(arch, reference, other, device="cpu"),
                               wv.weight_matching(arch, reference, other), atol=0, rtol=0)
    torch.testing.assert_close(wv.activation_matching(arch, digits_task, reference, other, device="cpu"),
                               wv.activation_matching(arch, digits_task, reference, other), atol=0, rtol=0)
    with pytest.raises(ValueError, match="not a device"):
        wv.weight_matching(arch, reference, other, device="gpu-please")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_matching_on_cuda_gives_the_cpu_result():
    from wslviz.core.module_arch import ModuleArchitecture
    from wslviz.core.tasks import make_task

    arch = ModuleArchitecture.builtin("resnet20", depth=8, width=0.25, in_channels=1, input_shape=[1, 8, 8])
    task = make_task("digits")
    reference, other = random_weights(arch, 2, seed=7)
    for match in (lambda d: wv.weight_matching(arch, reference, other, device=d),
                  lambda d: wv.activation_matching(arch, task, reference, other, device=d)):
        on_gpu = match("cuda")
        assert on_gpu.device.type == "cpu"
        assert equivalence_gap(arch, on_gpu, other) <= 1e-5
        torch.testing.assert_close(on_gpu, match("cpu"), atol=1e-5, rtol=0)


def test_batchnorm_folded_matching_keeps_function_of_trained_resnets():
    from wslviz.understand.align import fold_batchnorm_weights

    zoo = sample_zoo("digits-resnet")
    final = zoo.final_index()
    reference, other = zoo.weights[final[0]].float(), zoo.weights[final[1]].float()
    assert not torch.equal(fold_batchnorm_weights(zoo.arch, other.unsqueeze(0))[0], other)
    matched = wv.weight_matching(zoo.arch, reference, other, fold_batchnorm=True)
    assert not torch.equal(matched, other)
    assert equivalence_gap(zoo.arch, matched, other, zoo.task.x_test[:256]) <= 1e-5


def test_batchnorm_folded_matching_recovers_planted_permutations():
    from wslviz.core.module_arch import ModuleArchitecture

    arch = ModuleArchitecture.builtin("resnet20", depth=8, width=0.25, in_channels=1, input_shape=[1, 8, 8])
    reference = random_weights(arch, 1, seed=3)[0]
    # BatchNorm scales and statistics away from 1, so that folding changes the objective
    gen = torch.Generator().manual_seed(0)
    for p in arch.layout:
        if p.role in ("weight", "running_var") and len(p.shape) == 1:
            reference[p.slice] = torch.rand(p.shape, generator=gen) * 1.5 + 0.5
    for t in range(20):
        planted = wv.random_symmetry(arch, seed=100 + t)
        copy = wv.apply_symmetry(arch, reference, planted)
        aligned, g = wv.weight_matching(arch, reference, copy, seed=t, return_perm=True, fold_batchnorm=True)
        assert (aligned - reference).abs().max() <= 1e-5
        assert all(torch.equal(p, q) for p, q in zip(g.perms, inverse(planted).perms, strict=True))


def test_the_scale_search_shortlist_keeps_every_true_partner():
    """In a group of more units than the scale search's shortlist, a rescaled, permuted, slightly moved copy: the
    shortlisted gains never exceed the full search's nor fall below scale 1's, every true partner is searched (its
    gain and scale are the full search's), and the assignment on them pairs the units as planted."""
    from scipy.optimize import linear_sum_assignment

    from wslviz.understand.factors import SHORTLIST, pair_gains, scale_gain

    rng = np.random.default_rng(0)
    n, b = 4 * SHORTLIST, 2
    ref_in, ref_out = rng.normal(size=(b, n, 20)), rng.normal(size=(b, n, 30))
    perm = np.stack([rng.permutation(n) for _ in range(b)])
    scale = np.exp(rng.uniform(np.log(0.25), np.log(4.0), size=(b, n, 1)))
    other_in = np.take_along_axis(ref_in, perm[..., None], 1) * scale + 0.05 * rng.normal(size=(b, n, 20))
    other_out = np.take_along_axis(ref_out, perm[..., None], 1) / scale + 0.05 * rng.normal(size=(b, n, 30))
    c = {1: ref_in @ other_in.transpose(0, 2, 1), -1: ref_out @ other_out.transpose(0, 2, 1), 0: np.zeros((b, n, n))}
    norms = {1: (other_in ** 2).sum(-1)[:, None], -1: (other_out ** 2).sum(-1)[:, None], 0: np.zeros((b, 1, n))}
    gain, factor = pair_gains(c, norms, {"scale"})
    full, full_scale = scale_gain(c[1], norms[1], c[-1], norms[-1])
    assert (gain <= full + 1e-9).all()
    assert (gain >= 2 * c[1] - norms[1] + 2 * c[-1] - norms[-1] - 1e-9).all()
    partner = np.argsort(perm, 1)  # other's unit partner[j] is the reference's unit j
    rows = np.arange(n)
    for i in range(b):
        # the same element-wise search on a gathered copy of the same values
        np.testing.assert_allclose(gain[i, rows, partner[i]], full[i, rows, partner[i]], rtol=1e-12, atol=0)
        np.testing.assert_allclose(factor[i, rows, partner[i]], full_scale[i, rows, partner[i]], rtol=1e-12, atol=0)
        np.testing.assert_array_equal(linear_sum_assignment(gain[i], maximize=True)[1], partner[i])
