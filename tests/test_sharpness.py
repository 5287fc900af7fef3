"""Sharpness: power iteration and Hutchinson's trace against Hessians known exactly (a quadratic, a linear model
under squared error, the full autograd Hessian of a small MLP), on sequential and module architectures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wslviz.core.arch import Architecture, mlp_spec
from wslviz.core.module_arch import ModuleArchitecture
from wslviz.core.protocol import from_module
from wslviz.core.tasks import Task
from wslviz.understand import sharpness as H

# Power iteration's estimate is a Rayleigh quotient of float32 vectors: once converged it is exact to float32
# rounding of a P-term dot product, far below this.
EIG_RTOL = 1e-3


def _spd(p: int, eigenvalues: np.ndarray, seed: int) -> torch.Tensor:
    """A symmetric [p, p] matrix with the given eigenvalues (random orthogonal basis)."""
    q, _ = torch.linalg.qr(torch.randn(p, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return (q * torch.as_tensor(eigenvalues, dtype=torch.float64)) @ q.T


def _hutchinson_sigma(h: torch.Tensor, n_probes: int) -> float:
    """Standard deviation of the mean of ``n_probes`` Rademacher estimates: ``sqrt(2 (|H|_F^2 - sum H_ii^2) / n)``."""
    return float(torch.sqrt(2 * ((h ** 2).sum() - (torch.diagonal(h) ** 2).sum()) / n_probes))


@pytest.fixture(scope="module")
def quadratics():
    """Three Hessians of quadratic losses 1/2 w'Hw (P = 20), top eigenvalues 10, 7, 3 with gaps."""
    p = 20
    spectra = [np.r_[10.0, np.linspace(5.0, 0.1, p - 1)], np.r_[7.0, np.linspace(3.0, -1.0, p - 1)],
               np.r_[3.0, np.linspace(1.0, 0.0, p - 1)]]
    return torch.stack([_spd(p, s, seed=i) for i, s in enumerate(spectra)]), spectra


def _matrix_hvp(hs: torch.Tensor):
    return lambda v: torch.einsum("bij,bj->bi", hs, v.double()).float()


def test_power_iteration_returns_the_top_eigenvalue_of_a_quadratic(quadratics):
    hs, spectra = quadratics
    eig, steps = H.top_eigenvalue(_matrix_hvp(hs), (3, 20), n_iter=500, tol=1e-7, seed=0)
    np.testing.assert_allclose(eig, [s[0] for s in spectra], rtol=EIG_RTOL)
    assert np.all(steps < 500)  # every row converged


def test_hutchinson_converges_to_the_trace_of_a_quadratic(quadratics):
    hs, _ = quadratics
    n = 1000
    trace, se = H.hutchinson_trace(_matrix_hvp(hs), (3, 20), n_probes=n, seed=0)
    exact = torch.diagonal(hs, dim1=1, dim2=2).sum(1).numpy()
    sigma = np.array([_hutchinson_sigma(h, n) for h in hs])
    # stated tolerance: 4 standard deviations of the estimator (fails by chance with probability ~6e-5 per row;
    # fixed seed, so the test is deterministic)
    assert np.all(np.abs(trace - exact) <= 4 * sigma)
    np.testing.assert_allclose(se, sigma, rtol=0.15)  # the reported standard error estimates the true one


def test_hutchinson_is_exact_for_a_diagonal_hessian():
    d = torch.tensor([[3.0, -1.0, 0.5, 2.0], [1.0, 1.0, 1.0, 1.0]])
    trace, se = H.hutchinson_trace(lambda v: v * d, (2, 4), n_probes=5, seed=3)
    np.testing.assert_allclose(trace, d.sum(1).numpy(), rtol=1e-6)  # v_i^2 = 1: every probe gives the trace
    np.testing.assert_allclose(se, 0.0, atol=1e-6)


def _regression_task(n: int = 64, d: int = 3, seed: int = 0) -> Task:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, d, generator=g), torch.randn(n, 1, generator=g)
    return Task(name="npz", spec={}, x_train=x, y_train=y, x_test=x, y_test=y, kind="regression")


def test_linear_model_under_squared_error_has_its_known_hessian():
    """loss = mean_n (w.x_n + b - y_n)^2 has Hessian 2/N sum_n [x_n, 1][x_n, 1]' whatever the weights."""
    task = _regression_task()
    arch = Architecture(mlp_spec([3, 1]))  # layout: 0.weight [1, 3], then 0.bias [1]
    xb = torch.cat([task.x_train, torch.ones(len(task.x_train), 1)], 1).double()
    exact = 2 * xb.T @ xb / len(xb)
    weights = torch.randn(2, arch.n_params, generator=torch.Generator().manual_seed(1))
    df = H.sharpness(arch, task, weights, n_examples=64, n_iter=200, tol=1e-6, n_probes=400, seed=0)
    np.testing.assert_allclose(df["top_eigenvalue"], float(torch.linalg.eigvalsh(exact)[-1]), rtol=EIG_RTOL)
    assert np.all(np.abs(df["trace"] - float(torch.trace(exact))) <= 4 * _hutchinson_sigma(exact, 400))


def _full_hessians(arch, task, weights: torch.Tensor, n: int) -> torch.Tensor:
    """Each model's full [P, P] Hessian by ``torch.func.hessian`` of the built ``nn.Module`` (another code path than
    the batched forward pass the estimators differentiate)."""
    x, y = task.x_train[:n], task.y_train[:n]
    module = arch.build()

    def loss(w: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(torch.func.functional_call(module, arch.unflatten(w), (x,)), y)

    return torch.stack([torch.func.hessian(loss)(w).double() for w in weights])


@pytest.mark.parametrize("view", ["sequential", "module"])
def test_mlp_sharpness_matches_the_full_hessian(moons_zoo, view):
    """On trained moons MLPs (354 parameters) the full autograd Hessian is small enough to diagonalise; the module
    view of the same network runs vmap(functional_call) and must give the same numbers."""
    seq = moons_zoo.arch
    arch = seq if view == "sequential" else from_module(seq.build(), input_shape=seq.input_shape)
    weights = moons_zoo.weights[moons_zoo.final_index()[:2]]
    hs = _full_hessians(moons_zoo.arch, moons_zoo.task, weights, 128)
    n = 100
    df = H.sharpness(arch, moons_zoo.task, weights, n_examples=128, n_iter=200, tol=1e-6, n_probes=n, seed=0)
    eig = torch.linalg.eigvalsh(hs)
    top = torch.where(eig[:, -1].abs() >= eig[:, 0].abs(), eig[:, -1], eig[:, 0]).numpy()
    np.testing.assert_allclose(df["top_eigenvalue"], top, rtol=EIG_RTOL)
    exact = torch.diagonal(hs, dim1=1, dim2=2).sum(1).numpy()
    sigma = np.array([_hutchinson_sigma(h, n) for h in hs])
    assert np.all(np.abs(df["trace"].to_numpy() - exact) <= 4 * sigma)


def test_batchnorm_statistics_are_not_probed():
    """A module architecture with BatchNorm: the running statistics are masked out, the estimates finite."""
    arch = ModuleArchitecture.builtin("resnet20", depth=8, width=0.25, in_channels=1, input_shape=[1, 8, 8])
    mask = H.trainable_mask(arch)
    stats = [p for p in arch.layout if not p.trainable]
    assert stats and all(float(mask[p.offset:p.offset + p.numel].sum()) == 0 for p in stats)
    g = torch.Generator().manual_seed(0)
    task = Task(name="digits", spec={}, x_train=torch.rand(16, 1, 8, 8, generator=g),
                y_train=torch.randint(0, 10, (16,), generator=g), x_test=torch.rand(4, 1, 8, 8),
                y_test=torch.zeros(4, dtype=torch.long), n_classes=10)
    weights = arch.initial_weights()[None]
    df = H.sharpness(arch, task, weights, n_examples=16, n_iter=3, n_probes=2)
    assert np.isfinite(df[["top_eigenvalue", "trace"]].to_numpy()).all()


def test_sharpness_rejects_wrong_shapes(mlp_arch, moons_task):
    with pytest.raises(ValueError, match=r"\[B, 354\]"):
        H.sharpness(mlp_arch, moons_task, torch.zeros(mlp_arch.n_params))
