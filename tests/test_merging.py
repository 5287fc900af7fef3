"""Merge methods: exact properties of every method on sequential architectures (MLP, CNN, CNN with
BatchNorm), on module architectures (a BatchNorm ResNet and a pre-LN transformer from the built-ins) and on a
weights-only layout (layout-only methods run, the others refuse).

Exact equality is asserted only where the float64 arithmetic guarantees it (averages of identical rows,
``base + 0 * v``, SLERP endpoints, DARE with drop 0 going through the task-arithmetic code); elsewhere the
tolerance is a few float32 rounding steps.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import SMALL_CNN, sample_zoo
from test_symmetry import random_weights

import wslviz as wv
from wslviz.core import module_eval
from wslviz.core.arch import Architecture, mlp_spec
from wslviz.core.batched import forward
from wslviz.core.evaluation import evaluate, model_outputs
from wslviz.core.layout import NoForwardError
from wslviz.core.module_arch import ModuleArchitecture
from wslviz.core.permutation import SymmetryError
from wslviz.core.protocol import infer_layout
from wslviz.core.tasks import make_task, validation_split
from wslviz.generation import merge_lab as L
from wslviz.generation import merging as M
from wslviz.understand import align
from wslviz.understand.align import reset_batchnorm
from wslviz.understand.repair import repair_to

MLP = Architecture(mlp_spec([2, 16, 16, 2]))
CNN = Architecture(SMALL_CNN)
BN_CNN = Architecture({"input_shape": [1, 8, 8], "layers": [
    {"type": "conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": 3},
    {"type": "batchnorm", "num_features": 4},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    {"type": "conv2d", "in_channels": 4, "out_channels": 6, "kernel_size": 2},
    {"type": "relu"},
    {"type": "batchnorm", "num_features": 6},
    {"type": "flatten"},
    {"type": "linear", "in_features": 24, "out_features": 10},
]})
ARCHS = {"mlp": MLP, "cnn": CNN, "bn_cnn": BN_CNN}
ALL_METHODS = list(M.METHODS)


def close(a: torch.Tensor, b: torch.Tensor, ulps: float = 4.0) -> None:
    """Equal up to a few float32 rounding steps of the larger magnitude."""
    scale = float(torch.maximum(a.abs().max(), b.abs().max()))
    torch.testing.assert_close(a, b, rtol=0, atol=ulps * 1.2e-7 * max(scale, 1.0))


def task_for(arch: Architecture):
    return make_task("moons") if arch.input_shape == (2,) else make_task("digits")


def model(arch: Architecture, seed: int, task: bool = True) -> torch.Tensor:
    """A random model whose BatchNorm statistics (if any) describe its activations on the task (``task``), or
    are mean 0, variance 1 (what a merge without data resets them to)."""
    w = random_weights(arch, 1, seed=seed)[0]
    return reset_batchnorm(arch, w, task_for(arch) if task else None)


def options(method: str, theta: torch.Tensor, k: int) -> dict:
    if method in M.NEEDS_BASE:
        return {"base": theta}
    if method == "weighted":
        return {"coefficients": [1.0] * k}
    if method in ("fedavg", "aligned_fedavg"):
        return {"n_examples": [10] * k}
    return {}


@pytest.mark.parametrize("name", list(ARCHS))
@pytest.mark.parametrize("method", ALL_METHODS)
def test_merging_copies_of_a_model_returns_it(name, method):
    arch = ARCHS[name]
    task = task_for(arch)
    theta = model(arch, seed=3)
    k = 2 if method == "slerp" else 3
    copies = theta.expand(k, -1).clone()
    merged = wv.merge(arch, copies, task=task, method=method, **options(method, theta, k))
    assert merged.shape == theta.shape and merged.dtype == torch.float32
    if method in ("fisher", "slerp") or (method == "aligned" and name == "bn_cnn"):
        close(merged, theta)  # Fisher's weighted quotient and slerp's lerp round; BN stats are recomputed
    else:
        assert torch.equal(merged, theta), (method, float((merged - theta).abs().max()))


@pytest.mark.parametrize("name", list(ARCHS))
def test_symmetric_copies_merge_back_to_the_model_after_alignment(name):
    arch = ARCHS[name]
    task = task_for(arch)
    theta = model(arch, seed=4)
    copies = torch.stack([wv.apply_symmetry(arch, theta, wv.random_symmetry(arch, seed=s, kinds=("permutation",)))
                          for s in range(3)])
    for method, extra in (("aligned", {}), ("aligned", {"correction": "repair"}), ("aligned_fedavg", {})):
        merged = wv.merge(arch, copies, reference=theta if method == "aligned" else None, task=task, method=method,
                          **extra)
        out_m, out_t = (forward(arch, w.unsqueeze(0), task.x_test[:64])[0] for w in (merged, theta))
        torch.testing.assert_close(out_m, out_t, atol=1e-4, rtol=1e-4)
    # plain averaging of permuted copies is not the model: alignment is what makes the difference
    assert not torch.allclose(wv.merge(arch, copies, method="average", task=task), theta, atol=1e-3)


def test_default_merge_is_todays_aligned_average(digits_task):
    theta = random_weights(CNN, 1, seed=8)[0]
    others = random_weights(CNN, 3, seed=9)
    for ref in (theta, None):
        close(wv.merge(CNN, others, reference=ref), align.merge(CNN, others, reference=ref), ulps=16)
    close(wv.merge(BN_CNN, random_weights(BN_CNN, 2, seed=1), task=digits_task),
          align.merge(BN_CNN, random_weights(BN_CNN, 2, seed=1), task=digits_task), ulps=64)


@pytest.mark.parametrize("name", list(ARCHS))
def test_task_arithmetic_with_lambda_zero_is_the_base_and_dare_without_drops_is_task_arithmetic(name):
    arch = ARCHS[name]
    base = model(arch, seed=1, task=False)
    fts = base + 0.1 * random_weights(arch, 4, seed=2)
    assert torch.equal(M.task_arithmetic(arch, fts, base, lam=0.0), base)
    for lam in (0.0, 0.3, 1.0):
        ta = M.task_arithmetic(arch, fts, base, lam=lam)
        assert torch.equal(M.dare(arch, fts, base, drop=0.0, lam=lam), ta)
        assert torch.equal(M.dare(arch, fts, base, drop=0.0, lam=lam, combine="ties", density=0.3),
                           M.ties(arch, fts, base, density=0.3, lam=lam))
    learned = torch.cat([torch.arange(p.offset, p.offset + p.numel) for p in arch.layout if p.trainable])
    close(M.task_arithmetic(arch, fts, base, lam=1.0)[learned],
          (base.double() + (fts.double() - base.double()).sum(0)).float()[learned])
    # lam = 1/K is the plain average of the fine-tunes (BatchNorm statistics are reset by either)
    close(M.task_arithmetic(arch, fts, base, lam=0.25), M.average(arch, fts), ulps=16)


def test_ties_with_one_model_returns_it_and_follows_the_paper_on_a_small_example():
    base = random_weights(MLP, 1, seed=1)[0]
    ft = base + 0.2 * random_weights(MLP, 1, seed=2)
    close(M.ties(MLP, ft, base, density=1.0, lam=1.0), ft[0], ulps=1)
    v = torch.tensor([[1.0, -2.0, 0.5, 0.0], [3.0, 1.0, -0.5, -1.0]], dtype=torch.float64)
    # elected signs +, -, 0 (tie), -; disjoint means over the agreeing entries
    assert M.ties_vector(v, density=1.0).tolist() == [2.0, -2.0, 0.0, -1.0]
    trimmed = M.trim(v, density=0.5)  # the 2 largest magnitudes of each row
    assert trimmed.tolist() == [[1.0, -2.0, 0.0, 0.0], [3.0, 1.0, 0.0, 0.0]]


def test_trim_keeps_exactly_the_largest_entries():
    v = torch.randn(3, 1000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = M.trim(v, 0.2)
    assert ((t != 0).sum(1) == 200).all()
    for row, kept in zip(v, t, strict=True):
        assert row.abs()[kept == 0].max() <= row.abs()[kept != 0].min()
    with pytest.raises(ValueError, match="density"):
        M.trim(v, 0.0)


def test_dare_drops_and_rescales():
    v = torch.randn(2, 5000, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    d = M.dare_vectors(v, drop=0.8, seed=3)
    kept = d != 0
    assert torch.equal(d[kept], v[kept] / (1 - 0.8))  # survivors rescaled by 1 / (1 - p), exactly
    assert abs(float(kept.double().mean()) - 0.2) < 0.02
    assert torch.equal(M.dare_vectors(v, drop=0.8, seed=3), d)  # seeded
    with pytest.raises(ValueError, match="drop"):
        M.dare_vectors(v, drop=1.0)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_slerp_endpoints_and_norms(name):
    arch = ARCHS[name]
    a, b = random_weights(arch, 2, seed=5)
    pair = torch.stack([a, b])
    assert torch.equal(M.slerp(arch, pair, 0.0), a)
    assert torch.equal(M.slerp(arch, pair, 1.0), b)
    # for tensors of equal norm, every point of the great circle keeps that norm (a straight line does not)
    b_scaled = b.clone()
    for p in arch.layout:
        b_scaled[p.slice] *= a[p.slice].norm() / b[p.slice].norm()
    mid = M.slerp(arch, torch.stack([a, b_scaled]), 0.5)
    for p in arch.layout:
        torch.testing.assert_close(mid[p.slice].norm(), a[p.slice].norm(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="exactly two"):
        M.slerp(arch, torch.stack([a, b, a]), 0.5)


def test_weighted_average_and_fedavg_follow_their_coefficients():
    a, b = random_weights(MLP, 2, seed=6)
    pair = torch.stack([a, b])
    expected = (0.25 * a.double() + 0.75 * b.double()).float()
    close(M.weighted_average(MLP, pair, [1.0, 3.0]), expected)
    close(M.fedavg(MLP, pair, n_examples=[10, 30]), expected)
    close(wv.merge(MLP, pair, method="fedavg", n_examples=[10, 30]), expected)
    close(M.fedavg(MLP, pair), M.average(MLP, pair))
    with pytest.raises(ValueError, match="coefficients"):
        M.weighted_average(MLP, pair, [1.0, -1.0])


def test_diagonal_fisher_matches_per_example_autograd(moons_task):
    theta = random_weights(MLP, 1, seed=2)[0]
    fisher = M.diagonal_fisher(MLP, theta, moons_task, n_samples=40, seed=0)[0]
    net = MLP.build(theta)
    gen = torch.Generator().manual_seed(0)
    x = moons_task.x_train[torch.randperm(len(moons_task.x_train), generator=gen)[:40]]
    expected = torch.zeros(MLP.n_params, dtype=torch.float64)
    for xi in x:  # the definition, one example and one class at a time
        logp = torch.log_softmax(net(xi.unsqueeze(0))[0], -1)
        for c in range(2):
            grads = torch.autograd.grad(logp[c], list(net.parameters()), retain_graph=True)
            flat = MLP.flatten({k: g for (k, _), g in zip(net.named_parameters(), grads, strict=True)})
            expected += logp[c].exp().double().detach() * flat.double() ** 2
    torch.testing.assert_close(fisher, expected / 40, rtol=1e-4, atol=1e-9)
    assert (fisher >= 0).all()


def test_fisher_merge_weights_each_parameter_by_its_fisher(moons_task):
    a, b = random_weights(MLP, 2, seed=7)
    pair = torch.stack([a, b])
    f = M.diagonal_fisher(MLP, pair, moons_task, n_samples=64) + 1e-6
    expected = ((f[0] * a.double() + f[1] * b.double()) / (f[0] + f[1])).float()
    close(M.fisher_merge(MLP, pair, moons_task, n_samples=64), expected)


def test_repair_gives_every_unit_the_target_statistics(digits_task):
    arch = CNN
    models = random_weights(arch, 3, seed=11)
    c = M._coefficients(None, 3)
    merged = models.double().mean(0).float()
    repaired = M.repair(arch, merged, models, digits_task, n_samples=256)
    x = digits_task.x_train[torch.randperm(len(digits_task.x_train), generator=torch.Generator().manual_seed(0))[:256]]
    for group in arch.perm_spec.groups:
        def stats(w, layer=group.layer):
            h = forward(arch, w, x, capture={layer})[1][layer].double()
            h = h.movedim(2, 1).reshape(h.shape[0], h.shape[2], -1)
            return h.mean(-1), h.std(-1, unbiased=False)
        mu, sd = stats(repaired.unsqueeze(0))
        mu_t, sd_t = (c @ s for s in stats(models))
        torch.testing.assert_close(mu[0], mu_t, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(sd[0], sd_t, atol=1e-4, rtol=1e-4)


def test_greedy_soup_never_loses_held_out_accuracy(moons_zoo):
    final = moons_zoo.final_index()
    rows = np.concatenate([final[:6], np.flatnonzero(moons_zoo.metadata["epoch"] == 0)[:2]])
    w = moons_zoo.weights[torch.as_tensor(rows)]
    merged, ingredients = M.greedy_soup(moons_zoo.arch, w, moons_zoo.task)
    val = validation_split(moons_zoo.task)
    acc = evaluate(moons_zoo.arch, val, w)["accuracy"]
    assert ingredients[0] == int(acc.argmax())
    assert float(evaluate(moons_zoo.arch, val, merged)["accuracy"]) >= float(acc.max())
    torch.testing.assert_close(merged, w[torch.as_tensor(ingredients)].double().mean(0).float())


def test_merge_checks_its_inputs():
    w = random_weights(MLP, 2, seed=0)
    with pytest.raises(ValueError, match="unknown merge method"):
        wv.merge(MLP, w, method="magic")
    with pytest.raises(ValueError, match="base"):
        wv.merge(MLP, w, method="ties")
    with pytest.raises(ValueError, match="held-out"):
        wv.merge(MLP, w, method="soup")
    with pytest.raises(ValueError, match="REPAIR needs data"):
        wv.merge(MLP, w, correction="repair")


def test_analysis_helpers_on_small_examples(moons_task):
    base = torch.zeros(MLP.n_params)
    v = torch.zeros(3, MLP.n_params)
    v[0, :5], v[1, :5], v[2, 5:10] = 1.0, -1.0, 2.0
    sim = L.task_vector_similarity(base, v)
    np.testing.assert_allclose(sim, [[1, -1, 0], [-1, 1, 0], [0, 0, 1]], atol=1e-12)
    conflicts = L.sign_conflicts(MLP, base, v, density=1.0)
    first = conflicts.iloc[0]  # tensor "0.weight" (32 entries): 5 conflicting, 10 touched
    assert first["tensor"] == MLP.layout[0].name
    assert first["conflict_share"] == pytest.approx(5 / 32) and first["active_share"] == pytest.approx(10 / 32)
    theta = random_weights(MLP, 1, seed=3)[0]
    tasks = {"moons": moons_task}
    single = L.task_accuracies(MLP, tasks, theta)
    ens = L.ensemble_accuracies(MLP, tasks, theta.expand(3, -1))
    assert ens["moons"] == pytest.approx(single["moons"][0]) and ens["average"] == pytest.approx(ens["moons"])


def test_sweeps_start_at_their_endpoints(moons_task):
    a, b = random_weights(MLP, 2, seed=12)
    tasks = {"moons": moons_task}
    ends = L.task_accuracies(MLP, tasks, torch.stack([a, b]))["moons"].to_numpy()
    for method in ("weighted", "slerp"):
        curve = L.merge_sweep(MLP, tasks, torch.stack([a, b]), method, [0.0, 0.5, 1.0])
        assert list(curve["t"]) == [0.0, 0.5, 1.0]
        assert curve["moons"].iloc[0] == ends[0] and curve["moons"].iloc[-1] == ends[1]
    curve = L.merge_sweep(MLP, tasks, torch.stack([a, b]), "task_arithmetic", [0.0, 0.5], base=a)
    assert curve["moons"].iloc[0] == ends[0] and list(curve.columns) == ["lam", "moons", "average"]


def test_digits_finetunes_tasks_average_to_the_zoo_accuracy():
    zoo = sample_zoo("digits-finetunes")
    tasks = L.zoo_tasks(zoo)
    assert list(tasks) == ["original", "rotate90", "mirror", "invert", "noise"]
    final = zoo.final_index()
    acc = L.task_accuracies(zoo.arch, tasks, zoo.weights[torch.as_tensor(final)])
    meta = zoo.metadata.iloc[final]
    np.testing.assert_allclose(acc["average"], meta["test_acc"], atol=1e-6)
    for v in tasks:
        np.testing.assert_allclose(acc[v], meta[f"acc_{v}"], atol=1e-6)


def test_zoo_level_defaults_and_report():
    ft = sample_zoo("digits-finetunes")
    rows, base = L.default_merge_rows(ft)
    assert len(rows) == 30 and ft.metadata["role"].iloc[base] == "base"
    assert [t.spec["variant"] for t in L.model_tasks(ft, rows[:7:6])] == ["original", "rotate90"]
    merged = L.merge_rows(ft, rows, "task_arithmetic", base, lam=0.0)
    assert torch.equal(merged, ft.weights[base])
    report = L.merge_report(ft, rows, merged, base)
    acc = report["accuracy"]
    assert acc["average"].iloc[0] == acc["average"].iloc[2]  # lam = 0: the merge is the base
    assert report["similarity"].shape == (30, 30) and len(report["conflicts"]) == 6
    fed = sample_zoo("digits-federated")
    rows, base = L.default_merge_rows(fed)
    assert list(fed.metadata["round"].iloc[rows]) == [10] * 10 and fed.metadata["round"].iloc[base] == 0
    w = fed.weights[torch.as_tensor(rows)]
    n = fed.metadata["n_examples"].to_numpy()[rows]
    close(L.merge_rows(fed, rows, "fedavg"), M.fedavg(fed.arch, w, n))


# ---------------------------------------------------------------------------------------------- module architectures
_DIGITS = make_task("digits")
MODULE_TASKS = {  # small, so that the suite stays fast
    "resnet": replace(_DIGITS, x_train=_DIGITS.x_train[:256], y_train=_DIGITS.y_train[:256],
                      x_test=_DIGITS.x_test[:128], y_test=_DIGITS.y_test[:128]),
    "transformer": make_task({"name": "modadd", "p": 11, "seed": 0, "test_fraction": 0.5}),
}
MODULES = {
    "resnet": lambda: ModuleArchitecture.builtin("resnet20", depth=8, width=0.25, in_channels=1, input_shape=[1, 8, 8]),
    "transformer": lambda: ModuleArchitecture.builtin("gpt", n_layer=1, n_head=2, d_model=8, vocab_size=12, seq_len=3,
                                                      n_classes=11),
}


@pytest.fixture(scope="module", params=sorted(MODULES))
def module(request):
    """``(name, architecture, task)`` of a ResNet with BatchNorm or a transformer."""
    return request.param, MODULES[request.param](), MODULE_TASKS[request.param]


def module_models(arch: ModuleArchitecture, task, n: int, seed: int) -> torch.Tensor:
    """``n`` models near the initialisation, BatchNorm statistics (if any) those of their activations on ``task``."""
    gen = torch.Generator().manual_seed(seed)
    w = arch.initial_weights().repeat(n, 1)
    for p in arch.layout:
        if p.role not in ("running_mean", "running_var"):
            w[:, p.slice] += 0.2 * torch.randn(n, p.numel, generator=gen)
    return reset_batchnorm(arch, w, task)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_merging_copies_of_a_module_network_returns_it(module, method):
    name, arch, task = module
    theta = module_models(arch, task, 1, seed=3)[0]
    k = 2 if method == "slerp" else 3
    merged = wv.merge(arch, theta.expand(k, -1).clone(), task=task, method=method, **options(method, theta, k))
    assert merged.shape == theta.shape and merged.dtype == torch.float32
    if method in ("fisher", "slerp"):
        close(merged, theta)  # Fisher's weighted quotient and slerp's lerp round
    else:  # BatchNorm statistics recomputed from the same weights on the same inputs are the same numbers
        assert torch.equal(merged, theta), (method, float((merged - theta).abs().max()))


def test_a_module_network_merged_with_its_permuted_copy_keeps_its_function(module):
    name, arch, task = module
    theta = module_models(arch, task, 1, seed=4)[0]
    g = wv.random_symmetry(arch, seed=1, kinds=("permutation",))
    pair = torch.stack([theta, wv.apply_symmetry(arch, theta, g)])
    x = task.x_test[:64]
    expected = model_outputs(arch, theta.unsqueeze(0), x)[0]
    assert not torch.allclose(wv.merge(arch, pair, task=task, method="average"), theta, atol=1e-3)
    for method, extra in (("aligned", {}), ("aligned", {"correction": "repair"}), ("aligned", {"correction": "none"}),
                          ("aligned", {"matching": "activation"}), ("aligned_fedavg", {})):
        reference = theta if method == "aligned" else None
        merged = wv.merge(arch, pair, reference=reference, task=task, method=method, **extra)
        out = model_outputs(arch, merged.unsqueeze(0), x)[0]
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5, msg=f"{name} {method} {extra}")


def test_merged_batchnorm_statistics_are_recomputed_not_averaged():
    arch, task = MODULES["resnet"](), MODULE_TASKS["resnet"]
    pair = module_models(arch, task, 2, seed=5)
    stats = [p for p in arch.layout if p.role in ("running_mean", "running_var")]
    learned = [p for p in arch.layout if p.trainable]
    assert stats and learned
    for method, extra in (("average", {}), ("aligned", {}), ("weighted", {"coefficients": [1.0, 3.0]}),
                          ("slerp", {}), ("fedavg", {})):
        merged = wv.merge(arch, pair, task=task, method=method, **extra)
        recomputed = module_eval.batchnorm_statistics(arch, merged.unsqueeze(0), task.x_train[:2048])[0]
        for p in stats:
            assert torch.equal(merged[p.slice], recomputed[p.slice]), (method, p.name)
        # the first BatchNorm's mean is linear in the first conv (so averaging gets it right); no other statistic is
        off = [p.name for p in stats if not torch.allclose(merged[p.slice], pair[:, p.slice].mean(0), atol=1e-4)]
        assert len(off) >= len(stats) - 1, (method, off)
    # the learned tensors of the plain average are the average; only the statistics differ
    merged = wv.merge(arch, pair, task=task, method="average")
    for p in learned:
        assert torch.equal(merged[p.slice], pair[:, p.slice].double().mean(0).float())


def test_module_repair_merges_any_number_of_models(module):
    """REPAIR of a K-model merge gives every corrected layer's channels the average of the K models' mean and
    standard deviation (one implementation for every kind; it used to take two module models only)."""
    name, arch, task = module
    models = module_models(arch, task, 3, seed=6)
    merged = wv.merge(arch, models, reference=models[0], task=task, correction="repair")
    assert torch.isfinite(merged).all()
    x = task.x_train[:256]
    mean = models.double().mean(0).float().unsqueeze(0)
    fixed = repair_to(arch, models, mean, torch.full((1, 3), 1 / 3), x)
    layers = arch.repair_layers()
    keys = {layer.capture for layer in layers}
    _, ends = wv.forward(arch, models, x, capture=keys)
    _, now = wv.forward(arch, fixed, x, capture=keys)
    def flat(h: torch.Tensor) -> torch.Tensor:  # [B, N, C, ...] -> [B, C, N * ...]
        return h.movedim(2, 1).double().reshape(h.shape[0], h.shape[2], -1)

    for layer in layers:
        ends_k = flat(ends[layer.capture])
        goal_mu, goal_sd = ends_k.mean(-1).mean(0), ends_k.std(-1, correction=0).mean(0)
        got = flat(now[layer.capture])[0]
        torch.testing.assert_close(got.mean(-1), goal_mu, atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(got.std(-1, correction=0), goal_sd, atol=1e-3, rtol=1e-3)


def test_a_weights_only_layout_merges_by_layout_and_refuses_what_runs_the_network():
    gpt, task = MODULES["transformer"](), MODULE_TASKS["transformer"]
    models = module_models(gpt, task, 2, seed=7)
    layout = infer_layout(gpt.unflatten(models[0]))
    assert layout.kind == "weights-only" and layout.n_params == gpt.n_params
    for method in ("average", "weighted", "slerp", "task_arithmetic", "ties", "dare", "fedavg"):
        merged = wv.merge(layout, models, task=task, method=method, **options(method, models[0], 2))
        assert merged.shape == (gpt.n_params,) and torch.isfinite(merged).all()
    assert torch.equal(wv.merge(layout, models, method="average"), models.double().mean(0).float())
    for method, extra in (("soup", {}), ("fisher", {}), ("aligned", {"matching": "activation"}),
                          ("aligned", {"correction": "repair"})):
        with pytest.raises(NoForwardError, match="weights-only layout .* no forward"):
            wv.merge(layout, models, task=task, method=method, **extra)
    for method in ("aligned", "aligned_fedavg"):
        with pytest.raises(SymmetryError, match="which hidden units may be permuted is unknown"):
            wv.merge(layout, models, task=task, method=method)
